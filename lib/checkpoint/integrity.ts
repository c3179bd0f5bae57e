/**
 * The checkpoint's digest: a SHA-256 of the whole file, header included.
 *
 * The digest is stored in the file it covers, as the metadata string `checkpoint_sha256` (64
 * lowercase hex digits). It is the SHA-256 of every byte of the file (the 8-byte header length,
 * the JSON header with its padding, the data) with those 64 digits replaced by 64 ASCII `0`s. The
 * writer encodes the file with the zeros, hashes it, and writes the digits over the zeros (the
 * same length, so nothing moves). To check a file, find the one occurrence of
 * `"checkpoint_sha256":"<digits>"` in the header, hash the file with the digits read as zeros,
 * and compare. In Python:
 *
 * ```python
 * n = struct.unpack('<Q', buf[:8])[0]
 * d = json.loads(buf[8:8 + n])['__metadata__']['checkpoint_sha256']
 * key = b'"checkpoint_sha256":"'
 * at = buf.index(key + d.encode() + b'"', 8, 8 + n) + len(key)
 * assert hashlib.sha256(buf[:at] + b'0' * 64 + buf[at + 64:]).hexdigest() == d
 * ```
 *
 * Every bit of the file but the digest's own digits is hashed, and a change to the digits makes
 * them differ from the hash: a change anywhere is refused. It detects damage and edits; it is not
 * a signature (anyone can recompute it), so loads also check the structure (index.ts).
 */
import { createHash } from 'crypto';
import { AdampError } from '../errors';

/** The metadata key of the digest. */
export const DIGEST_KEY = 'checkpoint_sha256';

const ZEROS = '0'.repeat(64);
const HEX64 = /^[0-9a-f]{64}$/;

function keyBytes(digits: string): Buffer {
  return Buffer.from(`"${DIGEST_KEY}":"${digits}"`, 'latin1');
}

/** Offsets in `buf` where `needle` occurs, within [from, to). */
function occurrences(buf: Uint8Array, needle: Buffer, from: number, to: number): number[] {
  const hay = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: number[] = [];
  for (let at = hay.indexOf(needle, from); at >= 0 && at + needle.length <= to; at = hay.indexOf(needle, at + 1)) out.push(at);
  return out;
}

/** The SHA-256 (hex) of `buf` with the 64 bytes at `at` read as ASCII zeros. */
function digestWithZeros(buf: Uint8Array, at: number): string {
  return createHash('sha256').update(buf.subarray(0, at)).update(ZEROS, 'latin1').update(buf.subarray(at + 64)).digest('hex');
}

/**
 * Writes the digest into a file encoded with `checkpoint_sha256` set to 64 zeros (in place).
 * `headerLength` is the JSON header's length (the file's first 8 bytes).
 */
export function seal(buf: Buffer, headerLength: number): void {
  const key = keyBytes(ZEROS);
  const found = occurrences(buf, key, 8, 8 + headerLength);
  // The key is reserved and a JSON string's quotes are escaped, so the writer's header holds it once.
  if (found.length !== 1) throw new Error(`adamp internal error: the digest placeholder occurs ${found.length} times in the header`);
  const at = found[0] + key.length - 65;
  buf.write(digestWithZeros(buf, at), at, 'latin1');
}

/**
 * Checks the digest recorded in the file (`recorded`: the parsed metadata value) against the
 * file's bytes. Throws `ERR_ADAMP_BAD_CHECKPOINT` naming `source` when it does not match.
 */
export function verify(buf: Uint8Array, headerLength: number, recorded: string, source: string): void {
  const bad = (why: string) => new AdampError('ERR_ADAMP_BAD_CHECKPOINT', `${source} is damaged or was altered: ${why}`);
  if (!HEX64.test(recorded)) throw bad(`its metadata '${DIGEST_KEY}' is not 64 lowercase hex digits`);
  const key = keyBytes(recorded);
  const found = occurrences(buf, key, 8, 8 + headerLength);
  if (found.length !== 1) {
    throw bad(`its header holds '"${DIGEST_KEY}":"<digest>"' ${found.length} times (adamp writes it once, as is)`);
  }
  const at = found[0] + key.length - 65;
  if (digestWithZeros(buf, at) !== recorded) {
    throw bad('the SHA-256 of its bytes does not match the one recorded when it was saved');
  }
}

/** The SHA-256 (hex) of bytes: the data digest of format-1 files (`data_sha256`). */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}
