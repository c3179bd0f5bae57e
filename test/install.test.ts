/**
 * The user's path, in real child processes: the packed tarball installed into a fresh project.
 *
 * - On a machine with no compiler, CMake, make or nvcc (PATH rebuilt without them, no
 *   npm_config_nodedir, an empty user npmrc), the prebuilt addon gives a working `native`
 *   backend: the install compiles nothing, `backends()` reports native from prebuilds/, a step runs
 *   on it and agrees with js; a CUDA prebuilt loads without the toolkit and says why CUDA cannot run.
 * - A prebuilt that does not load (corrupt) makes the install build from source; with no compiler
 *   either, the install still succeeds and adamp runs on `js`, saying why once.
 * - The same corrupt prebuilt on a machine with a compiler (and no cmake-js, as users have): the
 *   install builds the addon with node-gyp and Node's own headers (offline) and native runs.
 * - The fallback warning (ADAMP_NATIVE_UNAVAILABLE): once per process at the first optimizer
 *   that falls back, not at import, not with ADAMP_QUIET=1, not for { backend: 'js' }, not when
 *   the addon loads.
 *
 * The prebuilt: the repository's prebuilds/<platform>-<arch> when `npm run prebuild` made a fresh
 * one, else one built for this test in build-install-test/ (incremental: the first run compiles,
 * with CUDA for sm_75 only when nvcc is here, to keep it short; the full recipe is `npm run prebuild`).
 * Dependencies (bindings, node-addon-api) come from the npm cache (`--prefer-offline`).
 */
import { spawnSync, type SpawnSyncReturns } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const root = path.join(__dirname, '..');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const inst = require('../scripts/install.js') as {
  PLATFORM: string;
  checkPrebuilt(dir?: string): { ok?: string; error?: string; missing?: boolean; file: string };
  readManifest(folder: string): { cuda?: boolean; cudaCode?: string[]; mpiSize?: number } | undefined;
};

const LONG = 15 * 60 * 1000;
const TOOLS = /^(cmake|ctest|cpack|ccmake|make|gmake|ninja|cc|c\+\+|cpp|nvcc|clang(\+\+)?(-[\d.]+)?|([\w.]+-)?(gcc|g\+\+|cpp|c\+\+)(-[\d.]+)?)$/;

function npmCli(): string {
  const candidates = [
    process.env.npm_execpath,
    path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js'),
    path.join(path.dirname(process.execPath), 'node_modules', 'npm', 'bin', 'npm-cli.js'),
  ];
  const hit = candidates.find((c) => c && /npm-cli\.js$/.test(c) && fs.existsSync(c));
  if (!hit) throw new Error(`npm-cli.js not found (tried ${candidates.filter(Boolean).join(', ')})`);
  return hit;
}

function npmCache(): string {
  const r = spawnSync(process.execPath, [npmCli(), 'config', 'get', 'cache'], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.trim() ? r.stdout.trim() : path.join(os.homedir(), '.npm');
}

function has(cmd: string): boolean {
  return spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;
}

function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeout?: number } = {}): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, timeout: opts.timeout ?? 600_000, cwd: opts.cwd, env: opts.env });
}

function ok(r: SpawnSyncReturns<string>, what: string): string {
  if (r.status !== 0) throw new Error(`${what} failed (status ${r.status}${r.error ? `, ${r.error.message}` : ''}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

// ---------------------------------------------------------------------------------------------
// Which prebuilt the test packs, decided before the tests are collected (skips need a reason).

const platformOk = process.platform === 'linux' || process.platform === 'darwin';
const repoPrebuilt = inst.checkPrebuilt(root);
const canBuild = has('cmake') && (has('c++') || has('g++') || has('clang++'));
const skipReason = !platformOk
  ? `the install test runs on Linux and macOS (this is ${process.platform})`
  : repoPrebuilt.ok === undefined && !canBuild
    ? 'no fresh prebuilds/ here and no cmake + C++ compiler to build one for the test (npm run prebuild)'
    : undefined;

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'adamp-install-test-'));
const testBuild = path.join(root, 'build-install-test');
let prebuiltFolder = '';
let goodTarball = '';
let corruptTarball = '';
let strippedPath = '';
let cache = '';

/** An environment like a user's: nothing of npm's own run (nodedir, lifecycle vars), an empty npmrc. */
function userEnv(pathVar: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    HOME: process.env.HOME ?? os.homedir(),
    PATH: pathVar,
    TMPDIR: os.tmpdir(),
    npm_config_userconfig: path.join(work, 'npmrc'),
    npm_config_cache: cache,
    npm_config_update_notifier: 'false',
    npm_config_fund: 'false',
    npm_config_audit: 'false',
    ...extra,
  };
  return env;
}

/** PATH without the node_modules/.bin folders npm adds for its scripts (a user's shell has none). */
function userPath(): string {
  return (process.env.PATH ?? '').split(path.delimiter).filter((d) => d && !/node_modules|node-gyp-bin/.test(d)).join(path.delimiter);
}

/** A folder of links to every program on PATH except compilers, build tools and nvcc. */
function strippedBin(): string {
  const bin = path.join(work, 'bin');
  fs.mkdirSync(bin, { recursive: true });
  for (const dir of userPath().split(path.delimiter).filter(Boolean)) {
    let names: string[];
    try {
      names = fs.readdirSync(dir);
    } catch {
      continue;
    }
    for (const n of names) {
      if (TOOLS.test(n) || fs.existsSync(path.join(bin, n))) continue;
      try {
        fs.symlinkSync(path.join(dir, n), path.join(bin, n));
      } catch {
        /* a name twice in one listing, or unreadable: skip */
      }
    }
  }
  if (!fs.existsSync(path.join(bin, 'node'))) fs.symlinkSync(process.execPath, path.join(bin, 'node'));
  return bin;
}

/** Installs a tarball into a fresh project; returns the project folder and npm's output. */
function install(name: string, tarball: string, pathVar: string, extra: Record<string, string> = {}): { dir: string; log: string; ms: number } {
  const dir = path.join(work, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: `t-${name}`, private: true }));
  const t0 = Date.now();
  const r = run(process.execPath, [npmCli(), 'install', '--prefer-offline', '--no-audit', '--no-fund', '--foreground-scripts', tarball],
    { cwd: dir, env: userEnv(pathVar, extra) });
  const log = `${r.stdout}\n${r.stderr}`;
  if (r.status !== 0) throw new Error(`npm install ${path.basename(tarball)} failed (status ${r.status}):\n${log}`);
  return { dir, log, ms: Date.now() - t0 };
}

/** Runs a script in a project with the given PATH; returns stdout, stderr. */
function nodeIn(dir: string, pathVar: string, code: string, extra: Record<string, string> = {}): { out: string; err: string } {
  const r = run(process.execPath, ['-e', code], { cwd: dir, env: userEnv(pathVar, extra), timeout: 120_000 });
  return { out: ok(r, 'node -e'), err: r.stderr };
}

const PROBE = `
  const a = require('adamp');
  const rep = a.backends();
  const p = { data: Float32Array.from({ length: 96 }, (_, i) => Math.sin(i)), grad: Float32Array.from({ length: 96 }, (_, i) => Math.cos(i)), shape: [8, 12] };
  const q = { data: p.data.slice(), grad: p.grad.slice(), shape: [8, 12] };
  const o = new a.AdamP([p], { lr: 0.1, weightDecay: 0.01 }); o.step(); o.step();
  const j = new a.AdamP([q], { lr: 0.1, weightDecay: 0.01 }, { backend: 'js' }); j.step(); j.step();
  let diff = 0; for (let i = 0; i < 96; i++) diff = Math.max(diff, Math.abs(p.data[i] - q.data[i]));
  console.log(JSON.stringify({ backend: o.backend, moved: p.data[1] !== Math.fround(Math.sin(1)), diff, backends: rep.map((b) => ({ name: b.name, available: b.available, reason: b.reason, path: b.details && b.details.path, cudaCompiledIn: b.details && b.details.cudaCompiledIn })) }));
`;

interface Probe {
  backend: string;
  moved: boolean;
  diff: number;
  backends: { name: string; available: boolean; reason?: string; path?: string; cudaCompiledIn?: boolean }[];
}
const lastJson = <T>(out: string): T => JSON.parse(out.trim().split('\n').pop()!) as T;
const warnings = (err: string): number => (err.match(/\[ADAMP_NATIVE_UNAVAILABLE\]/g) ?? []).length;

describe('installing the packed tarball', () => {
  if (skipReason !== undefined) {
    test.skip(`skipped: ${skipReason}`, () => {});
    return;
  }
  beforeAll(() => {
    cache = npmCache();
    fs.writeFileSync(path.join(work, 'npmrc'), '');
    strippedPath = strippedBin();

    // The prebuilt to ship: the repository's fresh one, else one built (incrementally) for the test.
    if (repoPrebuilt.ok !== undefined) {
      prebuiltFolder = path.dirname(repoPrebuilt.file);
      process.stdout.write(`[install test] packing the repository's prebuilt ${path.relative(root, repoPrebuilt.file)} (${repoPrebuilt.ok})\n`);
    } else {
      const env = { ...process.env };
      if (has('nvcc')) env.CUDAARCHS = '75-real';
      const t0 = Date.now();
      ok(run(process.execPath, [path.join(root, 'scripts', 'prebuild.js'), '--if-stale', '--incremental',
        '--prebuilds', path.join(testBuild, 'prebuilds'), '--build-dir', path.join(testBuild, 'build'), '--jobs', String(Math.min(os.cpus().length, 4))],
      { cwd: root, env }), 'scripts/prebuild.js for the test');
      prebuiltFolder = path.join(testBuild, 'prebuilds', inst.PLATFORM);
      const m = inst.readManifest(prebuiltFolder);
      process.stdout.write(`[install test] ${repoPrebuilt.missing ? 'no' : 'no fresh'} prebuilds/ in the repository: packing the test's own prebuilt ` +
        `${path.relative(root, prebuiltFolder)} (${m?.cuda ? `CUDA ${(m.cudaCode ?? []).join(' ')}` : 'CPU only'}; made or kept in ${((Date.now() - t0) / 1000).toFixed(0)} s)\n`);
    }

    // npm pack (dist/ is built by the suite's global setup; --ignore-scripts: no tsc racing the
    // other test files, no prebuild here), then the staged package with the chosen prebuilt.
    const packDir = path.join(work, 'pack');
    fs.mkdirSync(packDir);
    const packed = (JSON.parse(ok(run(process.execPath, [npmCli(), 'pack', '--ignore-scripts', '--json', '--pack-destination', packDir], { cwd: root }), 'npm pack')) as { filename: string }[])[0];
    const stage = (name: string, mutate: (pkg: string) => void): string => {
      const dir = path.join(work, `stage-${name}`);
      fs.mkdirSync(dir);
      ok(run('tar', ['xzf', path.join(packDir, packed.filename), '-C', dir]), 'tar x');
      const pkg = path.join(dir, 'package');
      fs.rmSync(path.join(pkg, 'prebuilds'), { recursive: true, force: true });
      fs.mkdirSync(path.join(pkg, 'prebuilds', inst.PLATFORM), { recursive: true });
      for (const f of ['adamp.node', 'adamp.json', 'adamp_mpi.node']) {
        if (f === 'adamp_mpi.node' && !fs.existsSync(path.join(prebuiltFolder, f))) continue; // a repository prebuilt made before it shipped
        fs.copyFileSync(path.join(prebuiltFolder, f), path.join(pkg, 'prebuilds', inst.PLATFORM, f));
      }
      mutate(pkg);
      const tgz = path.join(work, `adamp-${name}.tgz`);
      ok(run('tar', ['czf', tgz, '-C', dir, 'package']), 'tar c');
      return tgz;
    };
    goodTarball = stage('good', () => {});
    corruptTarball = stage('corrupt', (pkg) => {
      const f = path.join(pkg, 'prebuilds', inst.PLATFORM, 'adamp.node');
      const bytes = fs.readFileSync(f);
      bytes.fill(0x5a, 0, 64); // the ELF / Mach-O header: the loader refuses it
      fs.writeFileSync(f, bytes);
    });
  }, LONG);

  afterAll(() => {
    fs.rmSync(work, { recursive: true, force: true });
  });

  test('the stripped PATH has no compiler, CMake, make or nvcc', () => {
    for (const t of ['cmake', 'g++', 'gcc', 'cc', 'c++', 'clang++', 'nvcc', 'make', 'ninja']) {
      const r = run('sh', ['-c', `command -v ${t} || true`], { env: { PATH: strippedPath } });
      expect(`${t}: ${r.stdout.trim()}`).toBe(`${t}: `);
    }
    expect(fs.existsSync(path.join(strippedPath, 'node'))).toBe(true);
    expect(fs.existsSync(path.join(strippedPath, 'sh'))).toBe(true);
  });

  test('no compiler, CMake or nvcc: the install compiles nothing and the prebuilt runs the native backend', () => {
    const { dir, log, ms } = install('good', goodTarball, strippedPath);
    process.stdout.write(`[install test] prebuilt install: ${(ms / 1000).toFixed(1)} s\n`);
    expect(log).toMatch(/adamp: using the prebuilt native addon prebuilds\/[\w-]+\/adamp\.node/);
    expect(log).not.toMatch(/building|built with/);
    expect(fs.existsSync(path.join(dir, 'node_modules', 'adamp', 'build'))).toBe(false);
    expect(fs.existsSync(path.join(dir, 'node_modules', 'cmake-js'))).toBe(false); // not a dependency any more

    const { out, err } = nodeIn(dir, strippedPath, PROBE);
    const r = lastJson<Probe>(out);
    const native = r.backends.find((b) => b.name === 'native')!;
    expect(native.available).toBe(true);
    expect(native.path).toBe(path.join(dir, 'node_modules', 'adamp', 'prebuilds', inst.PLATFORM, 'adamp.node'));
    expect(r.backend).toBe('native');
    expect(r.moved).toBe(true);
    expect(r.diff).toBeLessThan(1e-6);
    expect(warnings(err)).toBe(0);

    // A CUDA prebuilt: compiled in, static runtime (loads without the toolkit); without a driver
    // or a GPU it says why.
    const manifest = inst.readManifest(prebuiltFolder)!;
    const cuda = r.backends.find((b) => b.name === 'cuda')!;
    expect(native.cudaCompiledIn).toBe(manifest.cuda === true);
    if (manifest.cuda && !cuda.available) expect(cuda.reason).toMatch(/driver|device|GPU/i);
    if (!manifest.cuda) expect(cuda.reason).toMatch(/no CUDA engine/);

    // adamp/distributed's MPI addon ships beside it (it loads libmpi at run time: no MPI needed).
    if (manifest.mpiSize !== undefined) {
      const { out: mpiOut } = nodeIn(dir, strippedPath, "const r = require('adamp/distributed').mpiAvailable(); console.log(JSON.stringify({ addon: r.addon, reason: r.reason }));");
      const m = lastJson<{ addon?: string; reason: string }>(mpiOut);
      expect(m.addon).toBe(path.join(dir, 'node_modules', 'adamp', 'prebuilds', inst.PLATFORM, 'adamp_mpi.node'));
    }

    // The command line users troubleshoot with.
    const info = run(process.execPath, [path.join(dir, 'node_modules', 'adamp', 'dist', 'cli', 'main.js'), 'info'], { cwd: dir, env: userEnv(strippedPath) });
    expect(ok(info, 'adamp info')).toMatch(/native\s+available/);
  }, LONG);

  test('a prebuilt that does not load and no compiler: the install succeeds and adamp runs on js, saying why once', () => {
    const { dir, log } = install('corrupt-nocc', corruptTarball, strippedPath);
    expect(log).toMatch(/the prebuilt native addon prebuilds\/[\w-]+\/adamp\.node cannot be used \(it does not load: [^)]*\): building from source/);
    expect(log).toMatch(/native addon not built \(no C\+\+ compiler found/);
    expect(log).toMatch(/using the TypeScript backend/);

    const { out, err } = nodeIn(dir, strippedPath, PROBE);
    const r = lastJson<Probe>(out);
    expect(r.backend).toBe('js');
    expect(r.moved).toBe(true);
    expect(r.backends.find((b) => b.name === 'native')!.available).toBe(false);
    expect(warnings(err)).toBe(1);
    expect(err).toMatch(/the native addon did not load \([^)]*prebuilds\/[\w-]+\/adamp\.node: [^)]+\), so backend 'auto' runs on 'js'/);
    expect(err).toMatch(/ADAMP_FORCE_BUILD=1 npm rebuild adamp/);
  }, LONG);

  test('a prebuilt that does not load, with a compiler and no cmake-js: the install builds the addon with node-gyp (offline headers)', () => {
    // The full PATH (compilers) but a user's npm config: no nodedir, no cmake-js installed.
    const { dir, log, ms } = install('corrupt-cc', corruptTarball, userPath());
    process.stdout.write(`[install test] corrupt prebuilt -> node-gyp build from source: ${(ms / 1000).toFixed(1)} s\n`);
    expect(log).toMatch(/cannot be used \(it does not load/);
    expect(log).toMatch(/adamp: native addon built with node-gyp in [\d.]+ s/);
    const { out, err } = nodeIn(dir, strippedPath, PROBE);
    const r = lastJson<Probe>(out);
    expect(r.backend).toBe('native');
    expect(r.backends.find((b) => b.name === 'native')!.path).toBe(path.join(dir, 'node_modules', 'adamp', 'build', 'Release', 'adamp.node'));
    expect(r.diff).toBeLessThan(1e-6);
    expect(warnings(err)).toBe(0);
  }, LONG);
});

// ---------------------------------------------------------------------------------------------
// The fallback warning, on the repository's dist/ (child processes: once per process).

describe('the ADAMP_NATIVE_UNAVAILABLE warning', () => {
  const dist = JSON.stringify(path.join(root, 'dist', 'lib', 'index.js'));
  const broken = path.join(os.tmpdir(), `adamp-broken-${process.pid}.node`);
  beforeAll(() => fs.writeFileSync(broken, 'not an addon'));
  afterAll(() => fs.rmSync(broken, { force: true }));

  function child(code: string, env: Record<string, string | undefined>): { out: string; err: string } {
    const e: NodeJS.ProcessEnv = { ...process.env, ...env };
    for (const [k, v] of Object.entries(env)) if (v === undefined) delete e[k];
    const r = run(process.execPath, ['-e', code], { cwd: root, env: e, timeout: 60_000 });
    return { out: ok(r, 'node -e'), err: r.stderr };
  }
  const TWO_OPTIMIZERS = (config: string) => `
    const a = require(${dist});
    console.log('imported');
    const mk = () => ({ data: new Float32Array([1, 2, 3, 4]), grad: new Float32Array([0.1, -0.2, 0.3, 0]), shape: [2, 2] });
    const o1 = new a.AdamP([mk()], {}, ${config}); o1.step();
    const o2 = new a.SGDP([mk()], { lr: 0.1 }, ${config}); o2.step();
    const o3 = new a.AdamP([mk()], {}, ${config}); o3.step();
    console.log(o1.backend, o2.backend, o3.backend);
  `;

  test("once per process, at the first optimizer that falls back (not at import), with the reason, what to do and the code", () => {
    const { out, err } = child(`
      process.on('warning', (w) => { if (w.code === 'ADAMP_NATIVE_UNAVAILABLE') console.log('event', w.name, JSON.stringify(w.detail)); });
      ${TWO_OPTIMIZERS('undefined')}
    `, { ADAMP_ADDON_PATH: broken, ADAMP_QUIET: undefined });
    const lines = out.trim().split('\n');
    expect(lines[0]).toBe('imported'); // nothing at import: the event comes after
    expect(lines.filter((l) => l.startsWith('event ')).length).toBe(1);
    expect(lines.find((l) => l.startsWith('event '))).toMatch(/^event AdampWarning ".*Tried:.*ADAMP_ADDON_PATH=.*Possible solutions:/);
    expect(lines).toContain('js js js'); // the 'warning' event comes on a later tick
    expect(warnings(err)).toBe(1);
    expect(err).toContain(broken);
    expect(err).toMatch(/check or unset ADAMP_ADDON_PATH/);
    expect(err).toMatch(/ADAMP_QUIET=1/);
    expect(err).toMatch(/npx adamp info/);
  });

  test('not at import, nor for backends(): only an optimizer that falls back warns', () => {
    const { out, err } = child(`
      const a = require(${dist});
      const r = a.backends().find((b) => b.name === 'native');
      setTimeout(() => console.log('native', r.available), 50);
    `, { ADAMP_ADDON_PATH: broken, ADAMP_QUIET: undefined });
    expect(out.trim()).toBe('native false');
    expect(warnings(err)).toBe(0);
  });

  test('ADAMP_QUIET=1 silences it; ADAMP_QUIET=0 does not', () => {
    expect(warnings(child(TWO_OPTIMIZERS('undefined'), { ADAMP_ADDON_PATH: broken, ADAMP_QUIET: '1' }).err)).toBe(0);
    expect(warnings(child(TWO_OPTIMIZERS('undefined'), { ADAMP_ADDON_PATH: broken, ADAMP_QUIET: '0' }).err)).toBe(1);
  });

  test("absent when the user asked for 'js'", () => {
    const { out, err } = child(TWO_OPTIMIZERS("{ backend: 'js' }"), { ADAMP_ADDON_PATH: broken, ADAMP_QUIET: undefined });
    expect(out.trim().split('\n').pop()).toBe('js js js');
    expect(warnings(err)).toBe(0);
  });

  const loadable = [path.join(root, 'build', 'Release', 'adamp.node'), path.join(root, 'prebuilds', inst.PLATFORM, 'adamp.node'),
    path.join(testBuild, 'prebuilds', inst.PLATFORM, 'adamp.node')].find((f) => fs.existsSync(f) &&
    run(process.execPath, ['-e', `process.exit(require(${JSON.stringify(f)}).info().version === require(${JSON.stringify(path.join(root, 'package.json'))}).version ? 0 : 1)`]).status === 0);
  (loadable ? test : test.skip)(`absent when the addon loads${loadable ? '' : ' (skipped: no addon built here)'}`, () => {
    const { out, err } = child(TWO_OPTIMIZERS('undefined'), { ADAMP_ADDON_PATH: loadable, ADAMP_QUIET: undefined });
    expect(out.trim().split('\n').pop()).toBe('native native native');
    expect(warnings(err)).toBe(0);
  });
});
