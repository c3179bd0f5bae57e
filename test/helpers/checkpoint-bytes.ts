/**
 * Byte surgery on checkpoint files for the checkpoint tests, written from the format's definition
 * (docs/checkpoints.md), independently of lib/checkpoint: read the header, edit it, lay the data
 * out again, and recompute the digest the way a third party would.
 */
import { createHash } from 'crypto';

export const DIGEST = 'checkpoint_sha256';

export interface Split {
  /** The JSON header's length (the first 8 bytes). */
  n: number;
  header: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  dataStart: number;
}

export function split(buf: Buffer): Split {
  const n = Number(buf.readBigUInt64LE(0));
  return { n, header: JSON.parse(buf.toString('utf8', 8, 8 + n)), dataStart: 8 + n };
}

/** Each tensor's bytes, by name, in the header's key order. */
export function tensorData(buf: Buffer): Map<string, Buffer> {
  const { header, dataStart } = split(buf);
  const out = new Map<string, Buffer>();
  for (const [k, v] of Object.entries<any>(header)) if (k !== '__metadata__') out.set(k, buf.subarray(dataStart + v.data_offsets[0], dataStart + v.data_offsets[1]));
  return out;
}

/** Tensor names in data order (ascending offsets). */
export function dataOrder(buf: Buffer): string[] {
  const { header } = split(buf);
  return Object.keys(header).filter((k) => k !== '__metadata__').sort((a, b) => header[a].data_offsets[0] - header[b].data_offsets[0]);
}

/** A file from a header object and a data section (offsets as the header says), padded as the reference writer pads. */
export function encode(header: object, data: Buffer, pad = true): Buffer {
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  if (pad) json = Buffer.concat([json, Buffer.alloc((8 - ((8 + json.length) % 8)) % 8, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, data]);
}

/**
 * The SHA-256 of the file with the 64 digits of its `checkpoint_sha256` read as '0's, as
 * docs/checkpoints.md defines it; null when the file has no such key in its header.
 */
export function computeDigest(buf: Buffer): { at: number; hex: string } | null {
  const { n, header } = split(buf);
  const d = header.__metadata__?.[DIGEST];
  if (typeof d !== 'string' || d.length !== 64) return null;
  const key = Buffer.from(`"${DIGEST}":"${d}"`);
  const i = buf.indexOf(key, 8);
  if (i < 0 || i + key.length > 8 + n) return null;
  const at = i + key.length - 65;
  const masked = Buffer.from(buf);
  masked.write('0'.repeat(64), at, 'latin1');
  return { at, hex: createHash('sha256').update(masked).digest('hex') };
}

/** Recomputes and writes the digest of a file whose header holds `checkpoint_sha256` (any 64 characters), in place. */
export function reseal(buf: Buffer): Buffer {
  const d = computeDigest(buf);
  if (d === null) throw new Error('reseal: the file has no 64-character checkpoint_sha256');
  buf.write(d.hex, d.at, 'latin1');
  return buf;
}

export interface RewriteOptions {
  /** Recompute the digest after the edit (default true); false leaves the old one, a tampered file. */
  reseal?: boolean;
  /** 'recompute' (default): lay the data out again in the header's key order; 'keep': keep the offsets as edited and the data section as it was. */
  offsets?: 'recompute' | 'keep';
}

/**
 * Rewrites a file with an edited header: `edit` may change the header (metadata, entries) and
 * the tensors' bytes. With `reseal` the digest is recomputed, so only the structural checks can
 * refuse the result.
 */
export function rewrite(bytes: Buffer, edit: (header: any, data: Map<string, Buffer>) => void, options: RewriteOptions = {}): Buffer {
  const { header, dataStart } = split(bytes);
  const data = tensorData(bytes);
  edit(header, data);
  const reseal_ = options.reseal ?? true;
  const meta = header.__metadata__;
  const oldDigest = meta?.[DIGEST];
  if (reseal_ && typeof oldDigest === 'string') meta[DIGEST] = '0'.repeat(64);
  let section: Buffer;
  if (options.offsets === 'keep') {
    section = bytes.subarray(dataStart);
  } else {
    let off = 0;
    const chunks: Buffer[] = [];
    for (const [k, v] of Object.entries<any>(header)) {
      if (k === '__metadata__') continue;
      const d = data.get(k) ?? Buffer.alloc(0);
      v.data_offsets = [off, off + d.length];
      off += d.length;
      chunks.push(d);
    }
    section = Buffer.concat(chunks);
  }
  const out = encode(header, section);
  if (reseal_ && typeof oldDigest === 'string') reseal(out);
  return out;
}

/** A copy of `buf` with bit `bit` (0 = the lowest bit of byte 0) flipped. */
export function flipBit(buf: Buffer, bit: number): Buffer {
  const c = Buffer.from(buf);
  c[bit >> 3] ^= 1 << (bit & 7);
  return c;
}
