/**
 * File-system failures as `AdampError`s with code `ERR_ADAMP_IO`: the message names the file the
 * caller gave (never a temporary file) and says what failed; `path` holds that file,
 * `errnoCode` Node's code (`'ENOENT'`, `'EACCES'`...), `syscall` the call, `cause` the original
 * error.
 */
import * as fs from 'fs';
import { AdampError, invalid } from '../errors';
import { describe } from '../core/describe';

/** An `ERR_ADAMP_IO` error. */
export interface CheckpointIoError extends AdampError {
  readonly code: 'ERR_ADAMP_IO';
  /** The file the caller named. */
  readonly path: string;
  /** Node's error code: `'ENOENT'`, `'EISDIR'`, `'EACCES'`, `'ENOSPC'`... (`'EUNKNOWN'` when it gave none). */
  readonly errnoCode: string;
  /** The system call that failed, when Node said (`'open'`, `'write'`, `'rename'`...). */
  readonly syscall?: string;
  readonly cause?: unknown;
}

const WHAT: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EISDIR: 'it is a directory, not a file',
  ENOTDIR: 'a component of the path is not a directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EFBIG: 'file too large (file size limit)',
  EROFS: 'read-only file system',
  EEXIST: 'a file is in the way',
  ENAMETOOLONG: 'the path is too long',
  ELOOP: 'too many levels of symbolic links',
  EMFILE: 'too many open files',
  ENFILE: 'too many open files in the system',
  EIO: 'input/output error',
  EBUSY: 'resource busy',
  EXDEV: 'cross-device rename',
  ERR_FS_FILE_TOO_LARGE: 'the file is larger than Node can read into one buffer',
};

/** Node's errno code of a thrown value, or undefined when it is not a file-system error. */
export function errnoOf(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (/^E[A-Z0-9]+$/.test(code) || code === 'ERR_FS_FILE_TOO_LARGE') ? code : undefined;
}

/**
 * The `ERR_ADAMP_IO` error of a failed file-system call: `<doing> '<target>': <what> (<CODE>)<detail>`.
 * `hide` (a temporary file's path) is replaced by the target wherever the original message
 * mentions it.
 */
export function ioError(doing: string, target: string, e: unknown, detail = '', hide?: string): CheckpointIoError {
  const errnoCode = errnoOf(e) ?? 'EUNKNOWN';
  let what = WHAT[errnoCode];
  if (what === undefined) {
    what = String((e as Error)?.message ?? e);
    if (hide) what = what.split(hide).join(target);
  }
  const err = new AdampError('ERR_ADAMP_IO', `${doing} '${target}': ${what} (${errnoCode})${detail}`) as AdampError & Record<string, unknown>;
  err.path = target;
  err.errnoCode = errnoCode;
  const syscall = (e as { syscall?: unknown } | null)?.syscall;
  if (typeof syscall === 'string') err.syscall = syscall;
  err.cause = e;
  return err as unknown as CheckpointIoError;
}

/** A path argument: a non-empty string without NUL bytes. */
export function checkPath(p: unknown, where = 'path'): string {
  if (typeof p !== 'string' || p.length === 0 || p.includes('\0')) {
    throw invalid(`${where} must be a non-empty file path string${typeof p === 'string' && p.includes('\0') ? ' without NUL bytes' : ''}, got ${describe(p)}`);
  }
  return p;
}

/** Reads a whole file; failures are `ERR_ADAMP_IO` naming it. */
export function readFileSyncChecked(file: string, doing: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (e) {
    if (errnoOf(e) === undefined) throw e;
    throw ioError(doing, file, e);
  }
}

/** Async `readFileSyncChecked`. */
export async function readFileChecked(file: string, doing: string): Promise<Buffer> {
  try {
    return await fs.promises.readFile(file);
  } catch (e) {
    if (errnoOf(e) === undefined) throw e;
    throw ioError(doing, file, e);
  }
}
