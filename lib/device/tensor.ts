/**
 * Tensors in GPU memory: buffers adamp allocates (`DeviceTensor.zeros`, `DeviceTensor.fromHost`)
 * and device memory someone else owns (`DeviceTensor.fromPointer`, a DLPack-like descriptor), so
 * params and gradients can stay on the GPU across steps. A param whose `data` is a DeviceTensor
 * is stepped by the CUDA backend in place, without copies.
 *
 * Lifetime: an allocated tensor's memory is freed by `dispose()` (or `using`), or when the
 * tensor is garbage-collected. An external tensor never frees its memory: its owner does, and
 * must keep it alive while the tensor is used (`keepAlive` holds a reference for you).
 * Using a disposed tensor throws `ERR_ADAMP_DISPOSED`; running out of device memory throws
 * `ERR_ADAMP_CUDA_OOM` with the bytes requested and free.
 */
import { AdampError, invalid } from '../errors';
import { describe, shapeNumel, shapeText } from '../core/describe';
import type { CudaAddon, CudaBufferHandle, CudaMemoryStats } from '../backends/cuda/binding';
import { cudaAddonOrReport } from '../backends/cuda/availability';
import type { DeviceView } from '../backends/engine';

/** Dimensions a device tensor may have. */
export const MAX_DIMS = 8;

/** Element types of a device tensor: float32, or 16-bit (raw bits on the host: Uint16Array). */
export type DeviceDtype = 'float32' | 'bfloat16' | 'float16';

/** DLPack's data type of a device tensor: kDLFloat = 2 (float32, float16), kDLBfloat = 4. */
export interface DLDataType {
  code: number;
  bits: number;
  lanes: number;
}

/** Where a new tensor is allocated, and its element type. */
export interface DeviceTensorOptions {
  /** CUDA device ordinal. Default `0`. */
  device?: number;
  /** Element type. Default `'float32'`; 16-bit tensors exchange raw bits with the host (Uint16Array). */
  dtype?: DeviceDtype;
}

/**
 * Device memory owned by someone else, described as DLPack describes a tensor. adamp reads and
 * writes it in place; it never frees it.
 */
export interface ExternalTensorDescriptor {
  /** Device address of the allocation (DLPack `data`), as a bigint (e.g. `BigInt(ptrFromYourStore)`). */
  pointer: bigint;
  /** Bytes from `pointer` to element 0 (DLPack `byte_offset`). Default `0`. */
  byteOffset?: number;
  shape: readonly number[];
  /** Element strides (DLPack `strides`, in elements, not bytes); omitted or `null` = row-major contiguous. */
  strides?: readonly number[] | null;
  /**
   * `'float32'`, `'bfloat16'` or `'float16'`, or DLPack's `{ code, bits, lanes: 1 }`: float32
   * `{ 2, 32 }`, float16 `{ 2, 16 }`, bfloat16 `{ 4, 16 }`. Default `'float32'`. 16-bit tensors
   * must be row-major contiguous.
   */
  dtype?: string | { code: number; bits: number; lanes: number };
  /** CUDA device ordinal, or a DLPack device `{ deviceType: 2 (kDLCUDA) | 13 (kDLCUDAManaged), deviceId }`. Default `0`. */
  device?: number | { deviceType: number; deviceId: number };
  /** Anything that must stay alive while this tensor is used (the store's own handle); held, never touched. */
  keepAlive?: unknown;
}

const DL_FLOAT = 2; // DLPack kDLFloat
const DL_BFLOAT = 4; // DLPack kDLBfloat
const DL_CUDA = 2;

/** Bytes per element. */
export function dtypeBytes(dtype: DeviceDtype | undefined): number {
  return dtype === 'bfloat16' || dtype === 'float16' ? 2 : 4;
}

/** DLPack's type of a dtype. */
export function dlDataType(dtype: DeviceDtype): DLDataType {
  return dtype === 'float32' ? { code: DL_FLOAT, bits: 32, lanes: 1 } : dtype === 'float16' ? { code: DL_FLOAT, bits: 16, lanes: 1 } : { code: DL_BFLOAT, bits: 16, lanes: 1 };
}

function checkDtypeOption(d: unknown, where: string): DeviceDtype {
  if (d === undefined) return 'float32';
  if (d === 'float32' || d === 'bfloat16' || d === 'float16') return d;
  throw invalid(`${where} must be 'float32', 'bfloat16' or 'float16', got ${describe(d)}`);
}

/** A descriptor's dtype: a name or a DLPack type. */
function descriptorDtype(dt: unknown): DeviceDtype {
  if (dt === undefined) return 'float32';
  if (typeof dt === 'string') {
    if (dt === 'float32' || dt === 'bfloat16' || dt === 'float16') return dt;
    throw invalid(`descriptor.dtype '${dt}' is not supported: adamp steps 'float32', 'bfloat16' and 'float16' tensors`);
  }
  if (dt !== null && typeof dt === 'object') {
    const { code, bits, lanes } = dt as Partial<DLDataType>;
    if ((lanes ?? 1) === 1) {
      if (code === DL_FLOAT && bits === 32) return 'float32';
      if (code === DL_FLOAT && bits === 16) return 'float16';
      if (code === DL_BFLOAT && bits === 16) return 'bfloat16';
    }
  }
  throw invalid(`descriptor.dtype ${describe(dt)} is not supported: adamp steps float32 { code: 2, bits: 32 }, float16 { code: 2, bits: 16 } and bfloat16 { code: 4, bits: 16 } tensors (lanes 1)`);
}

function isU16(x: unknown): x is Uint16Array {
  return x instanceof Uint16Array || (ArrayBuffer.isView(x) && Object.prototype.toString.call(x) === '[object Uint16Array]');
}
const DL_CUDA_MANAGED = 13;

let addonCache: CudaAddon | undefined;

/** The addon's CUDA functions, or an error saying why the GPU cannot be used here (the CUDA backend's own report). */
export function cudaAddon(what: string): CudaAddon {
  if (addonCache) return addonCache;
  const r = cudaAddonOrReport();
  if (!('addon' in r)) {
    throw new AdampError('ERR_ADAMP_BACKEND_UNAVAILABLE', `${what} needs the CUDA backend, which cannot run here: ${r.report.reason}`);
  }
  addonCache = r.addon;
  return r.addon;
}

/** Counts of the device memory adamp has allocated in this process (device tensors, optimizer state, staging). */
export function deviceMemory(): CudaMemoryStats {
  return cudaAddon('deviceMemory()').cudaMemoryStats();
}

function checkShape(shape: unknown, where: string): number[] {
  shapeNumel(shape, where);
  const dims = shape as number[];
  if (dims.length > MAX_DIMS) throw invalid(`${where} ${shapeText(dims)} has ${dims.length} dimensions; at most ${MAX_DIMS} are supported`);
  return dims.slice();
}

function product(shape: readonly number[]): number {
  let n = 1;
  for (const s of shape) n *= s;
  return n;
}

function checkDevice(device: unknown, where: string): number {
  if (device === undefined) return 0;
  if (typeof device !== 'number' || !Number.isSafeInteger(device) || device < 0) {
    throw invalid(`${where} must be a non-negative integer device ordinal, got ${describe(device)}`);
  }
  return device;
}

/** Strides equal to row-major (dimensions of extent 1 may have any stride). */
function isRowMajor(shape: readonly number[], strides: readonly number[]): boolean {
  let s = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    if (shape[d] !== 1 && strides[d] !== s) return false;
    s *= shape[d];
  }
  return true;
}

/** Elements from element 0 to one past the last element a view touches. */
function span(shape: readonly number[], strides: readonly number[] | null): number {
  if (product(shape) === 0) return 0;
  if (strides === null) return product(shape);
  let last = 0;
  for (let d = 0; d < shape.length; d++) last += (shape[d] - 1) * strides[d];
  return last + 1;
}

function hex(p: bigint): string {
  return '0x' + p.toString(16);
}

/** A float32, bfloat16 or float16 tensor in GPU memory. */
export class DeviceTensor {
  readonly shape: readonly number[];
  /** Element strides, or `null` for row-major contiguous. */
  readonly strides: readonly number[] | null;
  readonly numel: number;
  readonly device: number;
  /** Element type; 16-bit tensors are row-major contiguous and exchange raw bits with the host (Uint16Array). */
  readonly dtype: DeviceDtype;
  /** The memory belongs to someone else (`fromPointer`): adamp never frees it. */
  readonly external: boolean;
  #addon: CudaAddon;
  #buffer: CudaBufferHandle | null;
  readonly #pointer: bigint;
  #disposed = false;
  readonly #keepAlive: unknown;
  /** What an engine binds; immutable, so built once (the step reads it for every device param). */
  readonly #view: DeviceView;

  private constructor(addon: CudaAddon, shape: number[], strides: number[] | null, device: number, pointer: bigint,
    buffer: CudaBufferHandle | null, keepAlive: unknown, dtype: DeviceDtype) {
    this.#addon = addon;
    this.dtype = dtype;
    this.shape = Object.freeze(shape);
    this.strides = strides === null ? null : Object.freeze(strides);
    this.numel = product(shape);
    this.device = device;
    this.external = buffer === null;
    this.#buffer = buffer;
    this.#pointer = pointer;
    this.#keepAlive = keepAlive;
    this.#view = Object.freeze(dtype === 'float32' ? { pointer, device, shape: this.shape, strides: this.strides } : { pointer, device, shape: this.shape, strides: this.strides, dtype });
  }

  /** Allocates a zero-filled tensor. Throws `ERR_ADAMP_CUDA_OOM` when the device is out of memory. */
  static zeros(shape: readonly number[], options: DeviceTensorOptions = {}): DeviceTensor {
    const s = checkShape(shape, 'shape');
    const device = checkDevice(options?.device, 'options.device');
    const dtype = checkDtypeOption(options?.dtype, 'options.dtype');
    const addon = cudaAddon('DeviceTensor.zeros()');
    const buf = addon.cudaAlloc(device, product(s) * dtypeBytes(dtype));
    return new DeviceTensor(addon, s, null, device, addon.cudaBufferAddress(buf), buf, undefined, dtype);
  }

  /**
   * Allocates a tensor and uploads `data` into it (`shape` defaults to `[data.length]`): a
   * Float32Array for float32, a Uint16Array of raw bits for `options.dtype` 'bfloat16' / 'float16'.
   */
  static fromHost(data: Float32Array | Uint16Array, shape?: readonly number[], options: DeviceTensorOptions = {}): DeviceTensor {
    const dtype = checkDtypeOption(options?.dtype, 'options.dtype');
    if (dtype === 'float32' && !(data instanceof Float32Array)) {
      throw invalid(`data must be a Float32Array, got ${describe(data)}` + (isU16(data) ? " (16-bit bits need options.dtype 'bfloat16' or 'float16')" : ''));
    }
    if (dtype !== 'float32' && !isU16(data)) throw invalid(`data of a ${dtype} tensor must be a Uint16Array of ${dtype} bits, got ${describe(data)}`);
    const s = shape === undefined ? [data.length] : checkShape(shape, 'shape');
    if (product(s) !== data.length) throw invalid(`data length ${data.length} does not match shape ${shapeText(s)} (expected ${product(s)})`);
    const t = DeviceTensor.zeros(s, options);
    t.copyFromHost(data);
    return t;
  }

  /**
   * Wraps device memory someone else owns (a custom tensor store, another library) without
   * copying. Checked here: dtype float32, the pointer is device (or managed) memory of the given
   * device, 4-byte aligned, strides in range and not overlapping.
   */
  static fromPointer(desc: ExternalTensorDescriptor): DeviceTensor {
    if (desc === null || typeof desc !== 'object') throw invalid(`descriptor must be an object { pointer, shape, ... }, got ${describe(desc)}`);
    const shape = checkShape(desc.shape, 'descriptor.shape');
    const numel = product(shape);
    const dtype = descriptorDtype(desc.dtype);
    const esize = dtypeBytes(dtype);
    // device
    let device: number;
    if (typeof desc.device === 'object' && desc.device !== null) {
      const { deviceType, deviceId } = desc.device;
      if (deviceType !== DL_CUDA && deviceType !== DL_CUDA_MANAGED) {
        throw invalid(`descriptor.device.deviceType ${describe(deviceType)} is not a CUDA device (kDLCUDA = 2, kDLCUDAManaged = 13)`);
      }
      device = checkDevice(deviceId, 'descriptor.device.deviceId');
    } else {
      device = checkDevice(desc.device, 'descriptor.device');
    }
    // pointer
    if (typeof desc.pointer !== 'bigint') {
      throw invalid(`descriptor.pointer must be a bigint device address, got ${describe(desc.pointer)}` +
        (typeof desc.pointer === 'number' ? ' (numbers cannot hold every 64-bit address: pass BigInt(address))' : ''));
    }
    const off = desc.byteOffset ?? 0;
    if (typeof off !== 'number' || !Number.isSafeInteger(off) || off < 0) throw invalid(`descriptor.byteOffset must be a non-negative integer, got ${describe(off)}`);
    const pointer = desc.pointer + BigInt(off);
    if (desc.pointer <= 0n || pointer >= 1n << 64n) {
      if (numel > 0 || desc.pointer < 0n) throw invalid(`descriptor.pointer ${describe(desc.pointer)} is not a device address`);
    }
    if (pointer % BigInt(esize) !== 0n) throw invalid(`descriptor.pointer + byteOffset = ${hex(pointer)} is not ${esize}-byte aligned, as ${dtype} data must be`);
    // strides
    let strides: number[] | null = null;
    if (desc.strides !== undefined && desc.strides !== null) {
      if (!Array.isArray(desc.strides) || desc.strides.length !== shape.length) {
        throw invalid(`descriptor.strides must be an array of ${shape.length} integers (one per dimension of ${shapeText(shape)}), got ${describe(desc.strides)}`);
      }
      for (let d = 0; d < shape.length; d++) {
        const st = desc.strides[d];
        if (typeof st !== 'number' || !Number.isSafeInteger(st) || st < 0 || (st === 0 && shape[d] > 1)) {
          throw invalid(`descriptor.strides[${d}] must be a positive integer (in elements), got ${describe(st)}` +
            (st === 0 ? ': broadcast (stride 0) tensors cannot be updated in place' : ''));
        }
      }
      strides = desc.strides.slice();
      // Non-overlapping: sorted by stride, each dimension must step past the whole extent of the smaller ones.
      const dims = shape.map((n, d) => ({ n, s: strides![d] })).filter((x) => x.n > 1).sort((a, b) => a.s - b.s);
      let reach = 1;
      for (const { n, s } of dims) {
        if (s < reach) throw invalid(`descriptor.strides ${JSON.stringify(strides)} make elements of shape ${shapeText(shape)} overlap; each element must have its own memory`);
        reach = s * n;
      }
      if (isRowMajor(shape, strides)) strides = null;
    }
    if (strides !== null && dtype !== 'float32') {
      throw new AdampError('ERR_ADAMP_UNSUPPORTED', `descriptor.strides ${JSON.stringify(strides)}: ${dtype} device tensors must be row-major contiguous (strided views are float32 only)`);
    }
    const addon = cudaAddon('DeviceTensor.fromPointer()');
    if (numel > 0) {
      const info = addon.cudaPointerInfo(pointer);
      if (info.kind === 'managed') {
        // managed memory is reachable from every device
      } else if (info.kind !== 'device') {
        throw invalid(`descriptor.pointer ${hex(pointer)} is not CUDA device memory (CUDA says: ${info.kind})` +
          (info.kind === 'unregistered' || info.kind === 'host' ? '; for host memory use a Float32Array param instead' : ''));
      } else if (info.device !== device) {
        throw invalid(`descriptor.pointer ${hex(pointer)} is memory of device ${info.device}, but the descriptor says device ${device}`);
      }
    }
    return new DeviceTensor(addon, shape, strides, device, pointer, null, desc.keepAlive, dtype);
  }

  /**
   * This tensor as a DLPack-style descriptor (what `fromPointer` takes): the address, shape,
   * strides (null: row-major), DLPack dtype and device. The memory stays this tensor's: keep it
   * alive while the descriptor is used.
   */
  toDLPack(): Required<Omit<ExternalTensorDescriptor, 'keepAlive'>> & { dtype: DLDataType; device: { deviceType: number; deviceId: number } } {
    this.check('toDLPack()');
    return {
      pointer: this.#pointer, byteOffset: 0, shape: this.shape.slice(), strides: this.strides === null ? null : this.strides.slice(),
      dtype: dlDataType(this.dtype), device: { deviceType: DL_CUDA, deviceId: this.device },
    };
  }

  /** Address of element 0. */
  get pointer(): bigint {
    this.check('pointer');
    return this.#pointer;
  }

  /** `true` after `dispose()`. */
  get disposed(): boolean {
    return this.#disposed;
  }

  /** Row-major contiguous (`strides === null`). */
  get contiguous(): boolean {
    return this.strides === null;
  }

  /** Elements from element 0 to one past the last element this tensor touches. */
  get extent(): number {
    return span(this.shape, this.strides);
  }

  /** Copies the tensor into a Float32Array (`out`, or a new one); a 16-bit tensor into a Uint16Array of its bits. Waits for the copy. */
  toHost(out?: Float32Array): Float32Array;
  toHost(out?: Uint16Array): Uint16Array;
  toHost(out?: Float32Array | Uint16Array): Float32Array | Uint16Array {
    this.check('toHost()');
    if (this.dtype !== 'float32') {
      const bits = out ?? new Uint16Array(this.numel);
      if (!isU16(bits) || bits.length !== this.numel) throw invalid(`out must be a Uint16Array of ${this.numel} elements (${this.dtype} bits), got ${describe(out)}`);
      this.#addon.cudaCopyBytes(this.device, this.#pointer, bits, false);
      return bits;
    }
    const dst = out ?? new Float32Array(this.numel);
    if (!(dst instanceof Float32Array) || dst.length !== this.numel) {
      throw invalid(`out must be a Float32Array of ${this.numel} elements, got ${describe(out)}`);
    }
    this.#addon.cudaCopyToHost(this.device, this.#pointer, this.shape, this.strides, dst);
    return dst;
  }

  /** Overwrites the tensor with `src` (same number of elements, row-major; a Uint16Array of bits for 16-bit tensors). Complete when it returns. */
  copyFromHost(src: Float32Array | Uint16Array): this {
    this.check('copyFromHost()');
    if (this.dtype !== 'float32') {
      if (!isU16(src) || src.length !== this.numel) {
        throw invalid(`src must be a Uint16Array of ${this.numel} elements (${this.dtype} bits, shape ${shapeText(this.shape)}), got ${describe(src)}`);
      }
      this.#addon.cudaCopyBytes(this.device, this.#pointer, src, true);
      return this;
    }
    if (!(src instanceof Float32Array) || src.length !== this.numel) {
      throw invalid(`src must be a Float32Array of ${this.numel} elements (shape ${shapeText(this.shape)}), got ${describe(src)}`);
    }
    this.#addon.cudaCopyToDevice(this.device, this.#pointer, this.shape, this.strides, src);
    return this;
  }

  /** Sets every element to zero (`optimizer.zeroGrad()` calls it for device gradients). */
  fill(value: 0): this {
    if (value !== 0) throw invalid(`DeviceTensor.fill only supports 0, got ${describe(value)}`);
    this.check('fill()');
    if (this.dtype !== 'float32') this.#addon.cudaZeroBytes(this.device, this.#pointer, this.numel * 2);
    else this.#addon.cudaZero(this.device, this.#pointer, this.shape, this.strides);
    return this;
  }

  /**
   * Frees the memory now (allocated tensors) or forgets the pointer (external ones). Idempotent.
   * Later use throws `ERR_ADAMP_DISPOSED`.
   */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    if (this.#buffer !== null) this.#addon.cudaBufferFree(this.#buffer);
    this.#buffer = null;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  /** The view an engine binds (internal). */
  view(): DeviceView {
    this.check('view()');
    return this.#view;
  }

  toString(): string {
    return `DeviceTensor(${shapeText(this.shape)}, ${this.dtype}, cuda:${this.device}${this.external ? ', external' : ''}${this.#disposed ? ', disposed' : ''})`;
  }

  private check(what: string): void {
    if (this.#disposed) {
      throw new AdampError('ERR_ADAMP_DISPOSED', `DeviceTensor ${shapeText(this.shape)}: ${what} after dispose(); the tensor's memory was released`);
    }
  }
}

/** Whether two device views share memory (conservative: compares address ranges). */
export function viewsOverlap(a: DeviceView, b: DeviceView): boolean {
  if (a.device !== b.device) return false;
  const la = BigInt(span(a.shape, a.strides) * dtypeBytes(a.dtype));
  const lb = BigInt(span(b.shape, b.strides) * dtypeBytes(b.dtype));
  if (la === 0n || lb === 0n) return false;
  return a.pointer < b.pointer + lb && b.pointer < a.pointer + la;
}
