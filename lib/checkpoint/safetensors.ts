/**
 * The safetensors file format (https://github.com/huggingface/safetensors), both directions.
 *
 *   [8 bytes: N, unsigned little-endian u64] [N bytes: JSON header] [data]
 *
 * The header maps each tensor name to `{ dtype, shape, data_offsets: [begin, end] }` (offsets
 * relative to the start of the data, end exclusive) and may hold `__metadata__`, a map of
 * strings to strings. Data is raw little-endian, row-major. The reader accepts only files the
 * reference implementation accepts, and is stricter where the format leaves room: offsets
 * contiguous from 0 with no holes or overlaps, sizes equal to `numel * itemsize`, the data region
 * exactly covered, and no keys in a tensor's entry besides `dtype`, `shape` and `data_offsets`.
 */
import { AdampError, invalid } from '../errors';

/** The dtypes this package writes and reads. */
export type SafetensorsDtype = 'F32' | 'I64' | 'BF16' | 'F16';

const ITEM_SIZE: Record<string, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
  F8_E4M3: 1, F8_E5M2: 1,
};

/** The safetensors reference implementation refuses headers above 100 MB. */
const MAX_HEADER = 100_000_000;
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** One tensor to write. `F32` takes a Float32Array; `I64` a BigInt64Array; `BF16` and `F16` a Uint16Array of bits. */
export interface TensorToWrite {
  name: string;
  dtype: SafetensorsDtype;
  shape: readonly number[];
  data: Float32Array | BigInt64Array | Uint16Array;
}

/** One tensor of a parsed file: `bytes` is a view of the file buffer (no copy). */
export interface TensorRecord {
  name: string;
  dtype: string;
  shape: number[];
  bytes: Uint8Array;
}

export interface ParsedSafetensors {
  /** `__metadata__` (an object without a prototype, so that any key, `__proto__` included, is kept as it is). */
  metadata: Record<string, string>;
  /** Bytes of the JSON header (spaces of padding included); the data starts at `8 + headerLength`. */
  headerLength: number;
  /** Bytes of the data section (the end of the file). */
  dataLength: number;
  /** In file order (ascending offsets). */
  tensors: TensorRecord[];
  byName: Map<string, TensorRecord>;
}

function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Encodes tensors and string metadata as one safetensors file, tensors in the given order. */
export function encodeSafetensors(tensors: readonly TensorToWrite[], metadata: Record<string, string>): Buffer {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  const names = new Set<string>();
  for (const t of tensors) {
    if (names.has(t.name) || t.name === '__metadata__') throw invalid(`duplicate or reserved tensor name '${t.name}'`);
    names.add(t.name);
    const size = numelOf(t.shape) * ITEM_SIZE[t.dtype];
    if (t.data.byteLength !== size) {
      throw invalid(`tensor '${t.name}' has ${t.data.byteLength} bytes of data, shape [${t.shape.join(',')}] ${t.dtype} needs ${size}`);
    }
    header[t.name] = { dtype: t.dtype, shape: t.shape.slice(), data_offsets: [offset, offset + size] };
    offset += size;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  // Pad with spaces so the data starts 8-byte aligned (as the reference writer does).
  const pad = (8 - ((8 + json.length) % 8)) % 8;
  if (pad > 0) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const out = Buffer.allocUnsafe(8 + json.length + offset);
  out.writeBigUInt64LE(BigInt(json.length), 0);
  json.copy(out, 8);
  let pos = 8 + json.length;
  for (const t of tensors) {
    const bytes = fileBytes(t);
    out.set(bytes, pos);
    pos += bytes.length;
  }
  return out;
}

/**
 * Parses and structurally validates a safetensors file. `source` names the file in messages.
 * Throws `ERR_ADAMP_BAD_CHECKPOINT` on anything malformed, and never anything else.
 */
export function parseSafetensors(buf: Uint8Array, source: string): ParsedSafetensors {
  const bad = (why: string) => new AdampError('ERR_ADAMP_BAD_CHECKPOINT', `${source} is not a valid safetensors file: ${why}`);
  if (buf.length < 8) throw bad(`it has ${buf.length} bytes, fewer than the 8-byte header length (truncated file?)`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const n64 = view.getBigUint64(0, true);
  if (n64 > BigInt(buf.length - 8)) throw bad(`the header length ${n64} exceeds the ${buf.length - 8} bytes after it (truncated file?)`);
  const n = Number(n64);
  if (n > MAX_HEADER) throw bad(`the header length ${n} exceeds ${MAX_HEADER} bytes`);
  if (n < 2) throw bad(`the header length ${n} is too small for a JSON object`);
  let header: unknown;
  try {
    header = JSON.parse(UTF8.decode(buf.subarray(8, 8 + n)));
  } catch (e) {
    throw bad(`the header is not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) throw bad('the header is not a JSON object');
  const dataStart = 8 + n;
  const dataLength = buf.length - dataStart;
  const metadata: Record<string, string> = Object.create(null);
  const tensors: TensorRecord[] = [];
  const ranges: Array<{ name: string; begin: number; end: number; rec: TensorRecord }> = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw bad('__metadata__ is not an object');
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== 'string') throw bad(`__metadata__.${k} is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw bad(`the entry of tensor '${name}' is not an object`);
    const extra = Object.keys(raw).filter((k) => k !== 'dtype' && k !== 'shape' && k !== 'data_offsets');
    if (extra.length > 0) throw bad(`the entry of tensor '${name}' has ${extra.map((k) => `'${k}'`).join(', ')} besides dtype, shape and data_offsets`);
    const { dtype, shape, data_offsets: offs } = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof dtype !== 'string' || !Object.prototype.hasOwnProperty.call(ITEM_SIZE, dtype)) throw bad(`tensor '${name}' has unknown dtype ${JSON.stringify(dtype)}`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw bad(`tensor '${name}' has an invalid shape ${JSON.stringify(shape)}`);
    }
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((d) => Number.isSafeInteger(d) && d >= 0) || offs[1] < offs[0]) {
      throw bad(`tensor '${name}' has invalid data_offsets ${JSON.stringify(offs)}`);
    }
    const [begin, end] = offs as [number, number];
    const expected = numelOf(shape as number[]) * ITEM_SIZE[dtype];
    if (end - begin !== expected) {
      throw bad(`tensor '${name}' spans ${end - begin} bytes but shape [${(shape as number[]).join(',')}] ${dtype} needs ${expected}`);
    }
    if (end > dataLength) throw bad(`tensor '${name}' ends at byte ${end} of a ${dataLength}-byte data section (truncated file?)`);
    const rec: TensorRecord = { name, dtype, shape: (shape as number[]).slice(), bytes: buf.subarray(dataStart + begin, dataStart + end) };
    ranges.push({ name, begin, end, rec });
  }
  ranges.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let expectedBegin = 0;
  for (const r of ranges) {
    if (r.begin !== expectedBegin) {
      throw bad(r.begin < expectedBegin ? `tensor '${r.name}' overlaps the tensor before it` : `there is a gap before tensor '${r.name}'`);
    }
    expectedBegin = r.end;
    tensors.push(r.rec);
  }
  if (expectedBegin !== dataLength) throw bad(`the tensors cover ${expectedBegin} bytes but the data section has ${dataLength} (truncated file, or bytes appended?)`);
  return { metadata, headerLength: n, dataLength, tensors, byName: new Map(tensors.map((t) => [t.name, t])) };
}

/** Copies an F32 record into a new Float32Array (aligned, native byte order). */
export function readF32(rec: TensorRecord): Float32Array {
  const out = new Float32Array(rec.bytes.length / 4);
  const bytes = new Uint8Array(out.buffer);
  bytes.set(rec.bytes);
  if (!LITTLE_ENDIAN) swapInPlace(bytes, 4);
  return out;
}

/** Copies a BF16 or F16 record into a new Uint16Array of bits (native byte order). */
export function readU16(rec: TensorRecord): Uint16Array {
  const out = new Uint16Array(rec.bytes.length / 2);
  const bytes = new Uint8Array(out.buffer);
  bytes.set(rec.bytes);
  if (!LITTLE_ENDIAN) swapInPlace(bytes, 2);
  return out;
}

/** Reads an I64 record as BigInts. */
export function readI64(rec: TensorRecord): bigint[] {
  const view = new DataView(rec.bytes.buffer, rec.bytes.byteOffset, rec.bytes.byteLength);
  const out: bigint[] = [];
  for (let i = 0; i < rec.bytes.length; i += 8) out.push(view.getBigInt64(i, true));
  return out;
}

/** A tensor's bytes as they are stored in the file (little-endian). */
export function fileBytes(t: TensorToWrite): Uint8Array {
  const src = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  if (LITTLE_ENDIAN) return src;
  const copy = src.slice();
  swapInPlace(copy, ITEM_SIZE[t.dtype]);
  return copy;
}

function swapInPlace(bytes: Uint8Array, size: number): void {
  for (let i = 0; i < bytes.length; i += size) bytes.subarray(i, i + size).reverse();
}
