/**
 * Crash-safe file replacement: write a temporary file in the target's directory, flush it to
 * disk, rename it over the target, then flush the directory so the rename itself is durable.
 * A crash at any point leaves either the previous file or the complete new one (plus, at
 * worst, a stray `.<name>.<pid>.<random>.tmp` file next to it).
 *
 * The target's folder is created when missing (as `mkdir -p`). Every file-system failure is an
 * `ERR_ADAMP_IO` error naming the target (never the temporary file); a failed write or rename
 * removes the temporary file and leaves any previous file as it was.
 */
import * as fs from 'fs';
import * as path from 'path';
import { randomBytes } from 'crypto';
import { AdampError } from '../errors';
import { checkPath, errnoOf, ioError } from './io';

function tmpPathFor(target: string): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
}

/** Failures of a directory fsync that only mean "not supported here" (Windows, some network filesystems). */
const DIR_SYNC_UNSUPPORTED = new Set(['EISDIR', 'EINVAL', 'EPERM', 'EACCES', 'ENOTSUP', 'EBADF']);

const UNCHANGED = '; any previous file is unchanged';

/** Rethrows `e` as an `ERR_ADAMP_IO` error when it is a file-system error. */
function rethrow(e: unknown, doing: string, target: string, detail: string, tmp?: string): never {
  if (e instanceof AdampError || errnoOf(e) === undefined) throw e;
  throw ioError(doing, target, e, detail, tmp);
}

/** Checks the target, creates its folder; returns the folder. */
function prepareSync(target: string, doing: string): string {
  const dir = path.dirname(target);
  let isDir = false;
  try {
    isDir = fs.statSync(target).isDirectory();
  } catch { /* absent (or unreadable: the steps below say why) */ }
  if (isDir) throw ioError(doing, target, Object.assign(new Error('EISDIR'), { code: 'EISDIR', syscall: 'stat' }));
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (e) {
    rethrow(e, doing, target, `, creating its folder '${dir}'`);
  }
  return dir;
}

async function prepare(target: string, doing: string): Promise<string> {
  const dir = path.dirname(target);
  const isDir = await fs.promises.stat(target).then((s) => s.isDirectory(), () => false);
  if (isDir) throw ioError(doing, target, Object.assign(new Error('EISDIR'), { code: 'EISDIR', syscall: 'stat' }));
  try {
    await fs.promises.mkdir(dir, { recursive: true });
  } catch (e) {
    rethrow(e, doing, target, `, creating its folder '${dir}'`);
  }
  return dir;
}

function syncDirSync(dir: string, target: string, doing: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch (e) {
    if (!DIR_SYNC_UNSUPPORTED.has(errnoOf(e) ?? '')) {
      rethrow(e, doing, target, `, flushing its folder '${dir}' after the new file was put in place (it may not survive a power loss)`);
    }
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

async function syncDir(dir: string, target: string, doing: string): Promise<void> {
  let handle: fs.promises.FileHandle | undefined;
  try {
    handle = await fs.promises.open(dir, 'r');
    await handle.sync();
  } catch (e) {
    if (!DIR_SYNC_UNSUPPORTED.has(errnoOf(e) ?? '')) {
      rethrow(e, doing, target, `, flushing its folder '${dir}' after the new file was put in place (it may not survive a power loss)`);
    }
  } finally {
    await handle?.close();
  }
}

/**
 * Atomically replaces `target` with `data` (synchronous). `doing` starts error messages
 * (`cannot save checkpoint`).
 */
export function writeFileAtomicSync(target: string, data: Uint8Array, doing = 'cannot write'): void {
  checkPath(target);
  const dir = prepareSync(target, doing);
  const tmp = tmpPathFor(target);
  let fd: number;
  try {
    fd = fs.openSync(tmp, 'wx', 0o644);
  } catch (e) {
    rethrow(e, doing, target, `, creating a temporary file in its folder '${dir}'${UNCHANGED}`, tmp);
  }
  let renamed = false;
  let phase = ', writing it';
  try {
    try {
      let off = 0;
      while (off < data.length) off += fs.writeSync(fd, data, off, data.length - off);
      phase = ', flushing it to disk';
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    phase = ', renaming it into place';
    fs.renameSync(tmp, target);
    renamed = true;
  } catch (e) {
    rethrow(e, doing, target, `${phase}${UNCHANGED}`, tmp);
  } finally {
    if (!renamed) {
      try { fs.unlinkSync(tmp); } catch { /* already gone */ }
    }
  }
  syncDirSync(dir, target, doing);
}

/** Atomically replaces `target` with `data`. */
export async function writeFileAtomic(target: string, data: Uint8Array, doing = 'cannot write'): Promise<void> {
  checkPath(target);
  const dir = await prepare(target, doing);
  const tmp = tmpPathFor(target);
  let handle: fs.promises.FileHandle;
  try {
    handle = await fs.promises.open(tmp, 'wx', 0o644);
  } catch (e) {
    rethrow(e, doing, target, `, creating a temporary file in its folder '${dir}'${UNCHANGED}`, tmp);
  }
  let renamed = false;
  let phase = ', writing it';
  try {
    try {
      let off = 0;
      while (off < data.length) off += (await handle.write(data, off, data.length - off)).bytesWritten;
      phase = ', flushing it to disk';
      await handle.sync();
    } finally {
      await handle.close();
    }
    phase = ', renaming it into place';
    await fs.promises.rename(tmp, target);
    renamed = true;
  } catch (e) {
    rethrow(e, doing, target, `${phase}${UNCHANGED}`, tmp);
  } finally {
    if (!renamed) await fs.promises.unlink(tmp).catch(() => undefined);
  }
  await syncDir(dir, target, doing);
}
