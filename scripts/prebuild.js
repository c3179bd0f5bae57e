#!/usr/bin/env node
/**
 * The prebuilt addon shipped in the package: builds prebuilds/<platform>-<arch>/adamp.node for
 * this machine with cmake-js (CMakeLists.txt; the CUDA engine when nvcc is found, static CUDA
 * runtime), strips it, loads it in a child process, and writes its manifest adamp.json next to it
 * (version, Node-API version, CUDA code in the fatbin, the digest of the native sources, ...).
 * Beside it (not on Windows): adamp_mpi.node from the same build (lib/distributed's MPI
 * collective; it dlopens libmpi, so it must load without MPI), its size in the manifest (mpiSize).
 * scripts/install.js uses the prebuilt instead of compiling when it loads and matches.
 *
 *   node scripts/prebuild.js [options]        build this platform's prebuilt (`npm run prebuild`)
 *     --if-stale          keep the existing one when its manifest names this version, these
 *                         sources and the CUDA setting asked for (`prepack` uses this)
 *     --optional          (with `prepack`) when no prebuilt can be made here (no cmake, a failed
 *                         build), remove this platform's stale one, warn and exit 0: a git or
 *                         folder install still packs; the release checks with --check instead
 *     --cuda=auto|on|off  the CUDA engine (default: ADAMP_WITH_CUDA, else auto = when nvcc is found)
 *     --prebuilds DIR     the prebuilds folder (default: <package>/prebuilds)
 *     --build-dir DIR     cmake-js's output folder (default: <package>/build-prebuild)
 *     --jobs N            parallel compile jobs (default: the number of CPUs)
 *     --incremental       `cmake-js build` instead of `rebuild`: keep --build-dir's CMake cache
 *                         and compile only what changed (the release builds clean)
 *   node scripts/prebuild.js --check [--require LIST]
 *                         every prebuilds/<platform>-<arch>/ has an addon and a manifest for this
 *                         version and these sources; LIST (e.g. linux-x64:cuda,darwin-arm64) must
 *                         be there, `:cuda` ones with the default CUDA code; this platform's loads
 *     --max-glibc V       also: no Linux prebuilt needs a glibc newer than V (e.g. 2.28)
 *   node scripts/prebuild.js --list FILE      what a .node file's CUDA fatbin holds (sm_XX, compute_XX)
 *
 * CUDA architectures: CUDAARCHS, as for CMake (default in CMakeLists.txt: SASS for sm_75, 80, 86,
 * 89 and 90 and PTX for sm_90). Exits non-zero on any failure (this is release tooling, not the
 * user's install).
 */
'use strict';

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const inst = require('./install.js');

const root = path.resolve(__dirname, '..');

function say(line) {
  process.stderr.write(`prebuild: ${line}\n`); // stderr: `npm pack --json` keeps a clean stdout
}

/** Set by --optional: what to do instead of failing (remove the stale prebuilt, warn, exit 0). */
let onFailure;

function die(line) {
  process.stderr.write(`prebuild: ${line}\n`);
  if (onFailure) onFailure();
  process.exit(1);
}

function parseArgs(argv) {
  const o = { ifStale: false, optional: false, cuda: undefined, prebuilds: path.join(root, 'prebuilds'), buildDir: path.join(root, 'build-prebuild'), jobs: undefined, check: false, require: [], list: undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const [flag, inline] = a.startsWith('--') && a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const value = () => {
      if (inline !== undefined) return inline;
      if (i + 1 >= argv.length) die(`${flag} needs a value`);
      return argv[++i];
    };
    switch (flag) {
      case '--if-stale': o.ifStale = true; break;
      case '--optional': o.optional = true; break;
      case '--incremental': o.incremental = true; break;
      case '--cuda': o.cuda = value().toLowerCase(); break;
      case '--prebuilds': o.prebuilds = path.resolve(value()); break;
      case '--build-dir': o.buildDir = path.resolve(value()); break;
      case '--jobs': o.jobs = Number(value()); break;
      case '--check': o.check = true; break;
      case '--require': o.require.push(...value().split(',').map((s) => s.trim()).filter(Boolean)); break;
      case '--list': o.list = value(); break;
      case '--max-glibc': o.maxGlibc = value(); break;
      case '-h': case '--help':
        process.stdout.write(fs.readFileSync(__filename, 'utf8').split('*/')[0].replace(/^#!.*\n\/\*\*\n?/, '').replace(/^ \* ?/gm, ''));
        process.exit(0);
        break;
      default: die(`unknown argument '${a}' (see --help)`);
    }
  }
  if (o.cuda !== undefined && !['auto', 'on', 'off'].includes(o.cuda)) die(`--cuda must be auto, on or off, got '${o.cuda}'`);
  if (o.jobs !== undefined && !(Number.isInteger(o.jobs) && o.jobs > 0)) die('--jobs must be a positive integer');
  return o;
}

// ---------------------------------------------------------------------------------------------
// What a built file holds.

/**
 * The CUDA code in a binary's fatbins (ELF, PE or Mach-O alike: the fatbin blobs are found by
 * their magic): 'sm_XX' for SASS, 'compute_XX' for PTX, sorted. No cuobjdump needed.
 */
function cudaCode(file) {
  const b = fs.readFileSync(file);
  const magic = Buffer.from([0x50, 0xed, 0x55, 0xba]); // 0xBA55ED50, little-endian
  const code = new Set();
  for (let i = b.indexOf(magic); i >= 0 && i + 16 <= b.length; i = b.indexOf(magic, i + 4)) {
    if (b.readUInt16LE(i + 4) !== 1 || b.readUInt16LE(i + 6) !== 16) continue; // version 1, 16-byte header
    const end = i + 16 + Number(b.readBigUInt64LE(i + 8));
    if (end > b.length) continue;
    for (let p = i + 16; p + 32 <= end;) {
      const kind = b.readUInt16LE(p); // 1 = PTX, 2 = ELF (SASS)
      const headerSize = b.readUInt32LE(p + 4);
      const size = Number(b.readBigUInt64LE(p + 8));
      const arch = b.readUInt32LE(p + 28);
      if (headerSize < 32 || (kind !== 1 && kind !== 2)) break;
      code.add(`${kind === 1 ? 'compute' : 'sm'}_${arch}`);
      p += headerSize + size;
    }
  }
  const key = (s) => [Number(s.split('_')[1]), s.startsWith('sm') ? 0 : 1];
  return [...code].sort((x, y) => key(x)[0] - key(y)[0] || key(x)[1] - key(y)[1]);
}

/** The code CMAKE_CUDA_ARCHITECTURES asks for ("75-real;90-virtual;86" -> sm_75, compute_90, sm_86 + compute_86). */
function expectedCode(architectures) {
  const out = new Set();
  for (const a of architectures.split(/[;,\s]+/).filter(Boolean)) {
    const m = /^(\d+)[a-z]?(?:-(real|virtual))?$/.exec(a);
    if (!m) continue;
    if (m[2] !== 'virtual') out.add(`sm_${m[1]}`);
    if (m[2] !== 'real') out.add(`compute_${m[1]}`);
  }
  return [...out];
}

/** CMakeLists.txt's default CUDA architectures (one source of truth). */
function defaultArchitectures() {
  const m = /set\(CMAKE_CUDA_ARCHITECTURES\s+"([^"]+)"\)/.exec(fs.readFileSync(path.join(root, 'CMakeLists.txt'), 'utf8'));
  return m ? m[1] : '';
}

/** Shared libraries the binary needs (ELF only; readelf from binutils), or undefined. */
function neededLibraries(file) {
  if (process.platform !== 'linux') return undefined;
  const r = spawnSync('readelf', ['-d', file], { encoding: 'utf8' });
  if (r.status !== 0) return undefined;
  return [...r.stdout.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
}

/** Why a built adamp_mpi.node cannot be shipped (it does not load, is not the MPI addon, or links libmpi), or undefined. */
function mpiProblem(file) {
  const code = `try { const m = require(${JSON.stringify(file)}); process.stdout.write(typeof m.load === 'function' && typeof m.allgatherv === 'function' ? 'ok' : 'exports'); }
    catch (e) { process.stdout.write('error: ' + String(e && e.message).split('\\n')[0]); }`;
  const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8', timeout: 60000 });
  const out = (r.stdout || '').trim();
  if (out === 'exports') return "is not adamp's MPI addon (no load/allgatherv)";
  if (out !== 'ok') return `does not load: ${(out.replace(/^error: /, '') || r.stderr || `status ${r.status}`).slice(0, 300)}`;
  const mpi = (neededLibraries(file) || []).filter((l) => /^lib(mpi|mpich)/.test(l));
  if (mpi.length > 0) return `links ${mpi.join(', ')}; MPI must be loaded at run time so the package runs without it`;
  return undefined;
}

/** The newest GLIBC_ (or GLIBCXX_) symbol version the binary needs (the oldest glibc / libstdc++ it runs on), or undefined. */
function symbolFloor(file, prefix = 'GLIBC') {
  if (process.platform !== 'linux') return undefined;
  const r = spawnSync('objdump', ['-T', file], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) return undefined;
  const versions = [...new Set([...r.stdout.matchAll(new RegExp(`\\b${prefix}_(\\d+(?:\\.\\d+)+)`, 'g'))].map((m) => m[1]))];
  return versions.sort(compareVersions).pop();
}

/** The newer of two versions (either may be undefined). */
function newest(a, b) {
  return a === undefined ? b : b === undefined ? a : compareVersions(a, b) >= 0 ? a : b;
}

function compareVersions(a, b) {
  const x = a.split('.').map(Number), y = b.split('.').map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) if ((x[i] || 0) !== (y[i] || 0)) return (x[i] || 0) - (y[i] || 0);
  return 0;
}

function cacheValue(buildDir, name) {
  try {
    const m = new RegExp(`^${name}:[A-Z]+=(.*)$`, 'm').exec(fs.readFileSync(path.join(buildDir, 'CMakeCache.txt'), 'utf8'));
    return m ? m[1] : undefined;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Build.

/** The CUDA setting: 'on' or 'off' ('auto' resolved by looking for nvcc), and whether it was asked for explicitly. */
function cudaWanted(opt) {
  const fromEnv = process.env.ADAMP_WITH_CUDA;
  let mode = opt.cuda ?? (fromEnv !== undefined && fromEnv !== '' ? (/^(1|true|yes|on)$/i.test(fromEnv) ? 'on' : 'off') : 'auto');
  const explicit = mode !== 'auto';
  if (mode === 'auto') mode = inst.has('nvcc', ['--version']) ? 'on' : 'off';
  return { mode, explicit };
}

/** Why an existing prebuilt is not the one asked for, or undefined when it is. */
function staleness(folder, want) {
  const file = path.join(folder, 'adamp.node');
  const m = inst.readManifest(folder);
  if (!fs.existsSync(file)) return 'there is none';
  if (!m) return 'it has no manifest';
  if (m.version !== want.version) return `it is for adamp ${m.version}`;
  if (m.sources !== want.sources) return 'the native sources changed';
  // Without nvcc here and no explicit setting, a CUDA prebuilt (made elsewhere: the release's
  // CUDA job) is kept: packing on a machine without the toolkit must not replace it.
  const keepCuda = m.cuda && want.cuda === 'off' && !want.cudaExplicit;
  if (m.cuda !== (want.cuda === 'on') && !keepCuda) return `it was built ${m.cuda ? 'with' : 'without'} CUDA`;
  if (m.cuda && m.cudaArchitectures !== want.architectures) return `it was built for CUDA ${m.cudaArchitectures}, not ${want.architectures}`;
  if (m.size !== fs.statSync(file).size) return 'the file is not the one its manifest describes';
  if (mpiExpected() && !(m.mpiSize > 0 && fs.existsSync(path.join(folder, MPI_ADDON)) && fs.statSync(path.join(folder, MPI_ADDON)).size === m.mpiSize)) return `it has no ${MPI_ADDON} (or not the one its manifest describes)`;
  return undefined;
}

/** adamp_mpi.node (native/mpi; lib/distributed loads it, and libmpi at run time): shipped beside adamp.node. */
const MPI_ADDON = 'adamp_mpi.node';
/** The CMake build makes it everywhere but Windows (ADAMP_WITH_MPI, default ON; it needs nothing of MPI to build). */
function mpiExpected() {
  return process.platform !== 'win32' && fs.existsSync(path.join(root, 'native', 'mpi', 'addon.cc'));
}

/** Copies one built .node into the prebuilds folder, stripped, under a temporary .node name; returns that name. */
function stagedCopy(built, folder, stem) {
  const tmp = path.join(folder, `.${stem}-${process.pid}.node`); // a .node name: require() loads other names as JavaScript
  fs.copyFileSync(built, tmp);
  const strip = process.platform === 'linux' ? ['strip', ['--strip-unneeded', tmp]] : process.platform === 'darwin' ? ['strip', ['-x', tmp]] : undefined;
  if (strip) {
    const s = spawnSync(strip[0], strip[1], { encoding: 'utf8' });
    if (s.status !== 0) say(`note: ${strip[0]} failed or is missing (${(s.stderr || s.error?.message || '').trim().split('\n')[0]}); ${path.basename(built)} is shipped unstripped`);
  }
  return tmp;
}

function build(opt) {
  const version = inst.packageVersion(root);
  const { mode: cuda, explicit: cudaExplicit } = cudaWanted(opt);
  const architectures = process.env.CUDAARCHS || defaultArchitectures();
  const want = { version, sources: inst.sourcesDigest(root), cuda, cudaExplicit, architectures };
  const folder = path.join(opt.prebuilds, inst.PLATFORM);
  const target = path.join(folder, 'adamp.node');
  const rel = (f) => path.relative(process.cwd(), f) || '.';
  if (opt.optional) {
    onFailure = () => {
      fs.rmSync(folder, { recursive: true, force: true });
      process.stderr.write(`prebuild: WARNING: no prebuilt addon for ${inst.PLATFORM} is packed (${rel(folder)} removed); ` +
        'installs of this package will build the addon from source. `npm run prebuild` shows the failure.\n');
      process.exit(0);
    };
  }

  if (opt.ifStale) {
    const why = staleness(folder, want);
    if (why === undefined) {
      const p = inst.probe(target);
      if (p.info && !inst.mismatch(p.info, version)) {
        const m = inst.readManifest(folder);
        say(`${rel(target)} is up to date (adamp ${version}, ${m.cuda ? `CUDA ${m.cudaArchitectures}` : 'no CUDA'}): kept`);
        return;
      }
      say(`${rel(target)} does not load (${p.error || inst.mismatch(p.info, version)}): rebuilding`);
    } else {
      say(`${rel(target)}: ${why}: building`);
    }
  }

  const started = Date.now();
  if (!inst.has('cmake', ['--version'])) die('cmake is not on the PATH (CMake >= 3.19 builds the prebuilt addon)');
  const cmakeJs = inst.resolveBin('cmake-js/bin/cmake-js');
  if (!cmakeJs) die('the cmake-js package is not installed (a devDependency: run npm ci)');
  const args = [cmakeJs, opt.incremental ? 'build' : 'rebuild', '--directory', root, '--out', opt.buildDir, '--config', 'Release', `--CDADAMP_WITH_CUDA=${cuda === 'on' ? 'ON' : 'OFF'}`];
  args.push('--parallel', String(opt.jobs ?? (os.availableParallelism ? os.availableParallelism() : os.cpus().length)));
  if (cuda === 'on') args.push(`--CDCMAKE_CUDA_ARCHITECTURES=${architectures}`);
  say(`building adamp ${version} for ${inst.PLATFORM} (${cuda === 'on' ? `CUDA ${architectures}` : 'CPU only'}) in ${rel(opt.buildDir)}${opt.incremental ? ' (incremental)' : ''}`);
  const r = spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  const logFile = path.join(opt.buildDir, 'prebuild.log');
  fs.mkdirSync(opt.buildDir, { recursive: true });
  fs.writeFileSync(logFile, `$ node ${args.slice(1).join(' ')}\n${r.stdout || ''}${r.stderr || ''}`);
  if (r.status !== 0) {
    process.stderr.write(`${(r.stdout || '') + (r.stderr || '')}`.split('\n').slice(-40).join('\n') + '\n');
    die(`cmake-js failed (status ${r.status}); full log: ${logFile}`);
  }
  const built = [path.join(opt.buildDir, 'Release', 'adamp.node'), path.join(opt.buildDir, 'adamp.node')].find((f) => fs.existsSync(f));
  if (!built) die(`no adamp.node in ${opt.buildDir}/Release`);
  if (cuda === 'on') {
    const builtArchs = cacheValue(opt.buildDir, 'CMAKE_CUDA_ARCHITECTURES');
    if (builtArchs !== undefined && builtArchs !== architectures) die(`the build is for CUDA ${builtArchs}, asked ${architectures}`);
  }

  // Strip symbols the loader does not need (the .node keeps its dynamic exports).
  fs.mkdirSync(folder, { recursive: true });
  const tmp = stagedCopy(built, folder, 'adamp');

  // Check the copy before it replaces anything: it loads, fits, and has CUDA when asked.
  const p = inst.probe(tmp);
  if (p.error !== undefined) { fs.rmSync(tmp, { force: true }); die(`the built addon does not load: ${p.error}`); }
  const bad = inst.mismatch(p.info, version);
  if (bad) { fs.rmSync(tmp, { force: true }); die(`the built addon does not fit: ${bad}`); }
  if (p.info.cuda !== (cuda === 'on')) { fs.rmSync(tmp, { force: true }); die(`the built addon ${p.info.cuda ? 'has' : 'lacks'} the CUDA engine, asked ${cuda}`); }
  const needed = neededLibraries(tmp);
  const dynamicCuda = (needed || []).filter((l) => /^libcuda(rt)?\.so/.test(l));
  if (dynamicCuda.length > 0) { fs.rmSync(tmp, { force: true }); die(`the addon links ${dynamicCuda.join(', ')} dynamically; the CUDA runtime must be static (libcuda is dlopen'ed)`); }
  const code = cuda === 'on' ? cudaCode(tmp) : [];
  if (cuda === 'on') {
    const missing = expectedCode(architectures).filter((c) => !code.includes(c));
    if (missing.length > 0) { fs.rmSync(tmp, { force: true }); die(`the CUDA fatbin lacks ${missing.join(', ')} (holds ${code.join(', ') || 'nothing'})`); }
  }
  // The MPI addon from the same build: it must load here without any MPI (libmpi is dlopen'ed
  // by its load(), never linked).
  let mpiSize;
  const mpiTarget = path.join(folder, MPI_ADDON);
  if (mpiExpected()) {
    const builtMpi = [path.join(opt.buildDir, 'Release', MPI_ADDON), path.join(opt.buildDir, MPI_ADDON)].find((f) => fs.existsSync(f));
    if (!builtMpi) { fs.rmSync(tmp, { force: true }); die(`no ${MPI_ADDON} in ${opt.buildDir}/Release (ADAMP_WITH_MPI=OFF in its CMake cache?)`); }
    const tmpMpi = stagedCopy(builtMpi, folder, 'adamp_mpi');
    const bad = mpiProblem(tmpMpi);
    if (bad !== undefined) { fs.rmSync(tmp, { force: true }); fs.rmSync(tmpMpi, { force: true }); die(`the built ${MPI_ADDON} ${bad}`); }
    fs.renameSync(tmpMpi, mpiTarget);
    mpiSize = fs.statSync(mpiTarget).size;
  } else {
    fs.rmSync(mpiTarget, { force: true });
  }
  fs.renameSync(tmp, target);

  const manifest = {
    name: 'adamp',
    version,
    platform: process.platform,
    arch: process.arch,
    napiVersion: p.info.napiVersion,
    cuda: p.info.cuda,
    cudaArchitectures: cuda === 'on' ? architectures : undefined,
    cudaCode: cuda === 'on' ? code : undefined,
    cudaRuntime: cuda === 'on' ? 'static' : undefined,
    nvcc: cuda === 'on' ? cacheValue(opt.buildDir, 'CMAKE_CUDA_COMPILER') : undefined,
    compiler: cacheValue(opt.buildDir, 'CMAKE_CXX_COMPILER'),
    glibc: newest(symbolFloor(target, 'GLIBC'), mpiSize ? symbolFloor(mpiTarget, 'GLIBC') : undefined), // of both files
    glibcxx: newest(symbolFloor(target, 'GLIBCXX'), mpiSize ? symbolFloor(mpiTarget, 'GLIBCXX') : undefined),
    needed,
    node: process.version,
    size: fs.statSync(target).size,
    mpiSize,
    sources: want.sources,
  };
  fs.writeFileSync(path.join(folder, 'adamp.json'), JSON.stringify(manifest, null, 2) + '\n');
  say(`${rel(target)}: ${(manifest.size / 1024 / 1024).toFixed(2)} MiB, ${p.info.simd}` +
    `${cuda === 'on' ? `, CUDA ${code.join(' ')} (static runtime)` : ', no CUDA'}` +
    `${manifest.glibc ? `, needs glibc >= ${manifest.glibc}` : ''}${mpiSize ? `; ${MPI_ADDON} ${(mpiSize / 1024).toFixed(0)} KiB` : ''}; built in ${((Date.now() - started) / 1000).toFixed(0)} s`);
}

// ---------------------------------------------------------------------------------------------
// Check (the release's pack job: every prebuilt collected matches what is being packed).

function check(opt) {
  const version = inst.packageVersion(root);
  const sources = inst.sourcesDigest(root);
  const problems = [];
  let folders = [];
  try {
    folders = fs.readdirSync(opt.prebuilds, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name).sort();
  } catch {
    /* none */
  }
  for (const name of folders) {
    const folder = path.join(opt.prebuilds, name);
    const file = path.join(folder, 'adamp.node');
    const m = inst.readManifest(folder);
    const extra = fs.readdirSync(folder).filter((f) => f !== 'adamp.node' && f !== 'adamp.json' && !(f === MPI_ADDON && m?.mpiSize !== undefined));
    if (!fs.existsSync(file)) { problems.push(`${name}: no adamp.node`); continue; }
    if (!m) { problems.push(`${name}: no adamp.json manifest`); continue; }
    if (extra.length > 0) problems.push(`${name}: unexpected files ${extra.join(', ')}`);
    if (`${m.platform}-${m.arch}` !== name) problems.push(`${name}: its manifest says ${m.platform}-${m.arch}`);
    if (m.version !== version) problems.push(`${name}: built for adamp ${m.version}, packing ${version}`);
    if (m.sources !== sources) problems.push(`${name}: built from other native sources`);
    if (m.size !== fs.statSync(file).size) problems.push(`${name}: adamp.node is not the file its manifest describes`);
    if (m.mpiSize !== undefined && (!fs.existsSync(path.join(folder, MPI_ADDON)) || fs.statSync(path.join(folder, MPI_ADDON)).size !== m.mpiSize)) problems.push(`${name}: ${MPI_ADDON} is missing or not the file its manifest describes`);
    if (m.mpiSize === undefined && !name.startsWith('win32-')) problems.push(`${name}: no ${MPI_ADDON} (lib/distributed's MPI collective would need a build from source)`);
    if (opt.maxGlibc && m.glibc && compareVersions(m.glibc, opt.maxGlibc) > 0) problems.push(`${name}: needs glibc ${m.glibc}, newer than ${opt.maxGlibc}`);
    if (name === inst.PLATFORM) {
      const p = inst.probe(file);
      if (p.error !== undefined) problems.push(`${name}: does not load here: ${p.error}`);
      else if (inst.mismatch(p.info, version)) problems.push(`${name}: ${inst.mismatch(p.info, version)}`);
    }
    say(`${name}: ${m.cuda ? `CUDA ${(m.cudaCode || []).join(' ')}` : 'CPU'}${m.glibc ? `, glibc >= ${m.glibc}` : ''}, ${(m.size / 1024).toFixed(0)} KiB`);
  }
  for (const req of opt.require) {
    const [name, flag] = req.split(':');
    const m = folders.includes(name) ? inst.readManifest(path.join(opt.prebuilds, name)) : undefined;
    if (!m) { problems.push(`${name}: required but missing`); continue; }
    if (flag === 'cuda') {
      const missing = expectedCode(defaultArchitectures()).filter((c) => !(m.cudaCode || []).includes(c));
      if (!m.cuda) problems.push(`${name}: required with CUDA, built without`);
      else if (missing.length > 0) problems.push(`${name}: CUDA code lacks ${missing.join(', ')}`);
    } else if (flag !== undefined) {
      problems.push(`${req}: unknown requirement ':${flag}' (only ':cuda')`);
    }
  }
  if (folders.length === 0) problems.push(`no prebuilt addon in ${opt.prebuilds}`);
  if (problems.length > 0) die(`check failed:\n  - ${problems.join('\n  - ')}`);
  say(`${folders.length} prebuilt addon(s) match adamp ${version} and its native sources`);
}

function main() {
  const opt = parseArgs(process.argv.slice(2));
  if (opt.list !== undefined) {
    const code = cudaCode(path.resolve(opt.list));
    process.stdout.write(`${code.length ? code.join(' ') : '(no CUDA fatbin)'}\n`);
    return;
  }
  if (opt.check) return check(opt);
  return build(opt);
}

module.exports = { cudaCode, expectedCode, defaultArchitectures };

if (require.main === module) main();
