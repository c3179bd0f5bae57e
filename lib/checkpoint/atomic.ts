/**
 * Crash-safe file replacement: write a temporary file in the target's directory, flush it to
 * disk, rename it over the target, then flush the directory so the rename itself is durable.
 * A crash at any point leaves either the previous file or the complete new one (plus, at
 * worst, a stray `.<name>.<pid>.<random>.tmp` file next to it).
 */
import * as fs from 'fs';
import * as path from 'path';
import { randomBytes } from 'crypto';

function tmpPathFor(target: string): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
}

/** fsync of a directory is not supported everywhere (Windows, some network filesystems): best effort. */
function syncDirSync(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && code !== 'EINVAL' && code !== 'EPERM' && code !== 'EACCES' && code !== 'ENOTSUP') throw e;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

async function syncDir(dir: string): Promise<void> {
  let handle: fs.promises.FileHandle | undefined;
  try {
    handle = await fs.promises.open(dir, 'r');
    await handle.sync();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && code !== 'EINVAL' && code !== 'EPERM' && code !== 'EACCES' && code !== 'ENOTSUP') throw e;
  } finally {
    await handle?.close();
  }
}

/** Atomically replaces `target` with `data` (synchronous). */
export function writeFileAtomicSync(target: string, data: Uint8Array): void {
  const tmp = tmpPathFor(target);
  const fd = fs.openSync(tmp, 'wx', 0o644);
  let renamed = false;
  try {
    try {
      let off = 0;
      while (off < data.length) off += fs.writeSync(fd, data, off, data.length - off);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, target);
    renamed = true;
  } finally {
    if (!renamed) {
      try { fs.unlinkSync(tmp); } catch { /* already gone */ }
    }
  }
  syncDirSync(path.dirname(target));
}

/** Atomically replaces `target` with `data`. */
export async function writeFileAtomic(target: string, data: Uint8Array): Promise<void> {
  const tmp = tmpPathFor(target);
  const handle = await fs.promises.open(tmp, 'wx', 0o644);
  let renamed = false;
  try {
    try {
      let off = 0;
      while (off < data.length) off += (await handle.write(data, off, data.length - off)).bytesWritten;
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.promises.rename(tmp, target);
    renamed = true;
  } finally {
    if (!renamed) await fs.promises.unlink(tmp).catch(() => undefined);
  }
  await syncDir(path.dirname(target));
}
