/**
 * Finds and loads the native addon, once per process (per module registry).
 *
 * Candidates, in order: `ADAMP_ADDON_PATH` when set (then nothing else), what `bindings` finds
 * (build/Release, build/Debug, ...), then `prebuilds/<platform>-<arch>/adamp.node`. Every
 * failure is kept, so the caller can say exactly why the native backend is unavailable.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import bindings from 'bindings';
import { PACKAGE_ROOT } from '../core/package-root';
import { readEnv } from '../core/env';
import { ADDON_FUNCTIONS, type Addon } from './types';

export type AddonLoadResult =
  | { addon: Addon; path: string }
  | { errors: string[] };

export { PACKAGE_ROOT };

let cached: AddonLoadResult | undefined;

/** Loads the addon (memoized). Never throws: failures come back as `errors`, one line per cause. */
export function loadAddon(): AddonLoadResult {
  if (cached === undefined) cached = tryLoad();
  return cached;
}

/** What to do about a failed load, chosen from the causes. */
export function loadHints(errors: readonly string[]): string[] {
  const text = errors.join('\n');
  const hints: string[] = [];
  if (/ADAMP_ADDON_PATH/.test(text)) hints.push('check or unset ADAMP_ADDON_PATH');
  if (/not found|Could not locate/.test(text)) {
    hints.push('build it: `npm run build:native` (needs cmake, or `npm run build:native:gyp` with node-gyp, and a C++17 compiler)');
    hints.push('or reinstall with ADAMP_FORCE_BUILD=1 to see why the install-time build failed');
  }
  if (/was built for|contract|version/.test(text)) hints.push('rebuild it: `npm run build:native`');
  if (/invalid ELF|wrong ELF|undefined symbol|GLIBC|NODE_MODULE_VERSION/.test(text)) {
    hints.push('the binary does not match this system or Node.js: rebuild it with `npm run build:native`');
  }
  hints.push("the 'js' backend works everywhere: { backend: 'js' } or 'auto'");
  return hints;
}

function packageVersion(): string | undefined {
  try {
    const pkg = JSON.parse(fs.readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : undefined;
  } catch {
    return undefined;
  }
}

function message(e: unknown): string {
  const m = e instanceof Error || (typeof e === 'object' && e !== null && 'message' in e)
    ? String((e as { message: unknown }).message)
    : String(e);
  return m.split('\n')[0];
}

/** Checks that a loaded module is the addon this package expects; returns the problem or undefined. */
function checkContract(mod: unknown, file: string): string | undefined {
  if (typeof mod !== 'object' || mod === null) return `${file}: not an addon object`;
  const missing = ADDON_FUNCTIONS.filter((k) => typeof (mod as Record<string, unknown>)[k] !== 'function');
  if (missing.length > 0) return `${file}: does not match the addon contract (missing ${missing.join(', ')})`;
  const built = (mod as Addon).info().version;
  const want = packageVersion();
  if (want !== undefined && built !== want) return `${file}: was built for adamp ${built}, this package is ${want}`;
  return undefined;
}

function tryFile(file: string, errors: string[]): Addon | undefined {
  if (!fs.existsSync(file)) {
    errors.push(`${file}: not found`);
    return undefined;
  }
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const mod: unknown = require(file);
    const problem = checkContract(mod, file);
    if (problem !== undefined) {
      errors.push(problem);
      return undefined;
    }
    return mod as Addon;
  } catch (e) {
    errors.push(`${file}: ${message(e)}`);
    return undefined;
  }
}

function tryLoad(): AddonLoadResult {
  const errors: string[] = [];
  const explicit = readEnv('ADAMP_ADDON_PATH');
  if (explicit !== undefined) {
    const file = path.resolve(explicit);
    const addon = tryFile(file, errors);
    if (addon) return { addon, path: file };
    errors[errors.length - 1] = `ADAMP_ADDON_PATH=${explicit}: ${errors[errors.length - 1]}`;
    return { errors };
  }

  // `bindings` knows where node-gyp and cmake-js put their output; with `path: true` it only finds the file.
  let found: string | undefined;
  try {
    // `path` is a real option of bindings 1.5 that @types/bindings omits.
    const opts = { bindings: 'adamp.node', module_root: PACKAGE_ROOT, path: true } as Parameters<typeof bindings>[0];
    found = bindings(opts) as unknown as string;
  } catch (e) {
    const m = message(e);
    errors.push(/Could not locate/.test(m)
      ? `bindings: adamp.node not found under ${PACKAGE_ROOT} (build/, build/Release, build/Debug, out/, ...)`
      : `bindings: ${m}`);
  }
  if (found !== undefined) {
    const addon = tryFile(found, errors);
    if (addon) return { addon, path: found };
  }

  const prebuilt = path.join(PACKAGE_ROOT, 'prebuilds', `${process.platform}-${process.arch}`, 'adamp.node');
  const addon = tryFile(prebuilt, errors);
  if (addon) return { addon, path: prebuilt };
  return { errors };
}
