/**
 * The package's root folder (where package.json, build/ and prebuilds/ are), found from this
 * file whether it runs from the sources (lib/core) or compiled (dist/lib/core).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

function find(): string {
  let dir = __dirname;
  for (;;) {
    const file = path.join(dir, 'package.json');
    try {
      if ((JSON.parse(fs.readFileSync(file, 'utf8')) as { name?: unknown }).name === 'adamp') return dir;
    } catch {
      // not here: keep walking up
    }
    const up = path.dirname(dir);
    if (up === dir) return path.resolve(__dirname, '..', '..');
    dir = up;
  }
}

/** The package root (memoized). */
export const PACKAGE_ROOT = find();
