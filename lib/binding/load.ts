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

/** A cause that only says a candidate file is not there (every install lacks some of them). */
const NOT_THERE = /: not found$|adamp\.node not found under|Could not locate/;

/** What to do about a failed load, chosen from the causes. */
export function loadHints(errors: readonly string[]): string[] {
  const text = errors.join('\n');
  const telling = errors.filter((e) => !NOT_THERE.test(e));
  const hints: string[] = [];
  if (/ADAMP_ADDON_PATH/.test(text)) hints.push('check or unset ADAMP_ADDON_PATH');
  if (telling.length === 0 && !/ADAMP_ADDON_PATH/.test(text)) {
    hints.push(`reinstall: \`npm rebuild adamp\` uses the package's prebuilt addon for ${process.platform}-${process.arch} when it has one, else builds it from source (needs a C++17 compiler; see docs/install.md)`);
    hints.push('`ADAMP_FORCE_BUILD=1 npm rebuild adamp` shows why the install-time build failed');
  }
  if (/was built for|contract|version/.test(text)) hints.push('rebuild it: `npm rebuild adamp` (in a clone of the repository: `npm run build:native`)');
  if (/invalid ELF|wrong ELF|ELF header|undefined symbol|GLIBC|NODE_MODULE_VERSION|not a valid Win32|mach-o|dlopen/i.test(text)) {
    hints.push('the binary does not fit this system or Node.js: `ADAMP_FORCE_BUILD=1 npm rebuild adamp` builds it from source (needs a C++17 compiler; see docs/install.md)');
  }
  hints.push("the 'js' backend works everywhere: { backend: 'js' } or 'auto'");
  return hints;
}

/** The warning's code (`process.on('warning', (w) => w.code === ...)`). */
export const NATIVE_FALLBACK_WARNING = 'ADAMP_NATIVE_UNAVAILABLE';

/** Once per process, also across copies of this module (jest registries, two installed versions). */
const WARNED = Symbol.for('adamp.nativeFallbackWarned');

/**
 * Says once per process, with `process.emitWarning`, that backend `'auto'` runs on `js` because
 * the native addon did not load: why, and what to do. Called when an optimizer falls back (not at
 * import). Silent when the addon loaded, after the first time, and with `ADAMP_QUIET` set (not `0`).
 */
export function warnNativeFallback(): void {
  const r = loadAddon();
  if (!('errors' in r)) return;
  const g = globalThis as { [WARNED]?: boolean };
  if (g[WARNED] === true) return;
  const quiet = readEnv('ADAMP_QUIET');
  if (quiet !== undefined && quiet !== '0') return;
  g[WARNED] = true;
  const telling = r.errors.filter((e) => !NOT_THERE.test(e));
  const reason = telling.length > 0
    ? telling.join('; ')
    : `no adamp.node was built at install and there is no prebuilt one for ${process.platform}-${process.arch}`;
  const hints = loadHints(r.errors);
  process.emitWarning(
    `adamp: the native addon did not load (${reason}), so backend 'auto' runs on 'js' (TypeScript, single-threaded: slower). ` +
    `What to do: ${hints[0]}. \`npx adamp info\` shows every backend's status; ADAMP_QUIET=1 (or { backend: 'js' }) silences this warning.`,
    {
      type: 'AdampWarning',
      code: NATIVE_FALLBACK_WARNING,
      detail: `Tried:\n  - ${r.errors.join('\n  - ')}\nPossible solutions:\n  - ${hints.join('\n  - ')}`,
    },
  );
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
    const m = message(e);
    errors.push(m.includes(file) ? m : `${file}: ${m}`); // Node's dlopen messages start with the path
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
