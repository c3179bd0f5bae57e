#!/usr/bin/env node
/**
 * npm's install step: use the prebuilt addon when it fits this machine, else build the native
 * addon from source, and never fail the install because of it (unless ADAMP_FORCE_BUILD=1).
 *
 * 1. prebuilds/<platform>-<arch>/adamp.node (made by scripts/prebuild.js when the package is
 *    packed) is loaded in a child process: when it loads, was built for this version, needs no
 *    newer Node-API than this Node has, and its manifest (adamp.json) names these native sources,
 *    nothing is compiled. The loader (lib/binding/load.ts) finds it at run time.
 * 2. Otherwise it builds: cmake-js (CMakeLists.txt, CPU + CUDA) when `cmake` and the cmake-js
 *    package are there, else node-gyp (binding.gyp, CPU only; npm brings node-gyp). On failure it
 *    prints one line and exits 0: the package then runs on its TypeScript backend.
 *
 * Environment:
 *   ADAMP_SKIP_BUILD=1    do not build (a prebuilt addon is still used at run time if it loads)
 *   ADAMP_FORCE_BUILD=1   build from source even when the prebuilt fits; a failed build fails the
 *                         install, with the whole build log
 *   ADAMP_BUILD=cmake|gyp choose the build system
 *   ADAMP_WITH_CUDA=0|1   CMake only: never / always build the CUDA engine (default: when nvcc is found)
 *
 * scripts/prebuild.js requires this file for the helpers it exports (the checks are the same).
 */
'use strict';

const { spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const env = process.env;
const truthy = (v) => v !== undefined && /^(1|true|yes|on)$/i.test(v);
const force = truthy(env.ADAMP_FORCE_BUILD);

/** `<platform>-<arch>` as the loader names the prebuilds folder. */
const PLATFORM = `${process.platform}-${process.arch}`;

/** The sources a prebuilt is made from (relative to the package root); their digest goes in its manifest. */
const SOURCE_DIRS = ['native/binding', 'native/cpu', 'native/cuda', 'native/include', 'native/mpi'];
const SOURCE_FILES = ['CMakeLists.txt', 'binding.gyp'];
const SOURCE_EXT = /\.(c|cc|cpp|cxx|h|hh|hpp|cu|cuh)$/;

function say(line) {
  process.stdout.write(`adamp: ${line}\n`);
}

function has(cmd, args) {
  const r = spawnSync(cmd, args, { stdio: 'ignore', shell: process.platform === 'win32' });
  return r.status === 0;
}

function resolveBin(spec) {
  try {
    return require.resolve(spec, { paths: [root] });
  } catch {
    return undefined;
  }
}

function packageVersion(dir = root) {
  return JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).version;
}

/**
 * SHA-256 of the native sources (path and text of each file, sorted by path; CRLF read as LF, so
 * a Windows checkout digests like a Linux one). A prebuilt whose manifest names another digest was
 * built from other sources.
 */
function sourcesDigest(dir = root) {
  const files = [];
  const walk = (rel) => {
    let entries;
    try {
      entries = fs.readdirSync(path.join(dir, rel), { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const r = `${rel}/${e.name}`;
      if (e.isDirectory()) walk(r);
      else if (SOURCE_EXT.test(e.name)) files.push(r);
    }
  };
  SOURCE_DIRS.forEach(walk);
  for (const f of SOURCE_FILES) if (fs.existsSync(path.join(dir, f))) files.push(f);
  files.sort();
  const h = crypto.createHash('sha256');
  for (const f of files) {
    const text = fs.readFileSync(path.join(dir, f), 'utf8').replace(/\r\n/g, '\n');
    h.update(`${f}\0${text}\0`);
  }
  return h.digest('hex');
}

/** The prebuilt addon's folder for a platform. */
function prebuiltDir(platform = PLATFORM, dir = root) {
  return path.join(dir, 'prebuilds', platform);
}

function readManifest(folder) {
  try {
    return JSON.parse(fs.readFileSync(path.join(folder, 'adamp.json'), 'utf8'));
  } catch {
    return undefined;
  }
}

/**
 * Loads an addon in a child process (a broken binary must not take this process down) and reads
 * what it says about itself: { info } or { error } (the first line of the failure).
 */
function probe(file) {
  const code = `let a;
    try { a = require(${JSON.stringify(file)}); } catch (e) { process.stdout.write(JSON.stringify({ error: String(e && e.message) })); process.exit(0); }
    const i = a.info();
    const kinds = a.kinds().map((k) => k.name);
    process.stdout.write(JSON.stringify({ info: { version: i.version, napiVersion: i.napiVersion, simd: i.simd, cuda: i.cuda, kinds } }));`;
  const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8', timeout: 60000 });
  let out;
  try {
    out = JSON.parse(r.stdout);
  } catch {
    // It crashed (a signal, an abort) or printed something else: say how.
    const line = (r.stderr || '').split('\n').map((l) => l.trim()).find((l) => /Error|error:|not found|cannot/i.test(l));
    return { error: (line || (r.error ? r.error.message : `the process ended with status ${r.status}, signal ${r.signal}`)).slice(0, 300) };
  }
  if (out.error !== undefined) return { error: out.error.split('\n')[0].replace(`${file}: `, '').slice(0, 300) };
  return { info: out.info };
}

/** What a probed addon is, in a few words. */
function describeInfo(info) {
  return `${info.simd}${info.cuda ? ', cuda' : ''}`;
}

/** Whether a probed addon fits this package and this Node: the reason when it does not. */
function mismatch(info, version) {
  if (info.version !== version) return `it was built for adamp ${info.version}, this package is ${version}`;
  const napi = Number(process.versions.napi);
  if (!(info.napiVersion <= napi)) return `it needs Node-API ${info.napiVersion}, this Node (${process.version}) has ${process.versions.napi}`;
  return undefined;
}

/**
 * The prebuilt addon for this platform: { missing: true }, { error } (why it cannot be used), or
 * { ok: description, file }.
 */
function checkPrebuilt(dir = root) {
  const folder = prebuiltDir(PLATFORM, dir);
  const file = path.join(folder, 'adamp.node');
  if (!fs.existsSync(file)) return { missing: true, file };
  const version = packageVersion(dir);
  const manifest = readManifest(folder);
  if (manifest !== undefined) {
    if (manifest.version !== version) return { error: `its manifest says adamp ${manifest.version}, this package is ${version}`, file };
    if (manifest.sources !== undefined && manifest.sources !== sourcesDigest(dir)) {
      return { error: 'it was built from other native sources than the ones in this package', file };
    }
  }
  const p = probe(file);
  if (p.error !== undefined) return { error: `it does not load: ${p.error}`, file };
  const bad = mismatch(p.info, version);
  if (bad !== undefined) return { error: bad, file };
  return { ok: describeInfo(p.info), info: p.info, file };
}

/** A C++ compiler and make on this machine, or the reason there is none (POSIX; Windows: node-gyp finds Visual Studio). */
function toolchainProblem() {
  if (process.platform === 'win32') return undefined;
  const cxx = [env.CXX && env.CXX.trim().split(/\s+/)[0], 'c++', 'g++', 'clang++'].filter(Boolean);
  if (!cxx.some((c) => has(c, ['--version']))) return `no C++ compiler found (looked for ${cxx.join(', ')})`;
  return undefined;
}

/** The install prefix of the running Node when it holds its own headers (include/node), else undefined. */
function localNodeHeaders() {
  if (process.platform === 'win32') return undefined; // node-gyp also needs node.lib there: let it download
  const prefix = path.resolve(process.execPath, '..', '..');
  const inc = path.join(prefix, 'include', 'node');
  return ['node_api.h', 'node_version.h', 'common.gypi'].every((f) => fs.existsSync(path.join(inc, f))) ? prefix : undefined;
}

/** The command that builds with the chosen system, or a reason why it cannot run. */
function buildCommand(system) {
  if (system === 'cmake') {
    if (!has('cmake', ['--version'])) return { error: 'cmake is not installed (install CMake >= 3.19, or set ADAMP_BUILD=gyp)' };
    const cmakeJs = resolveBin('cmake-js/bin/cmake-js');
    if (!cmakeJs) return { error: 'the cmake-js package is not installed (`npm install --save-dev cmake-js@8` next to adamp builds with CMake, and CUDA)' };
    const args = [cmakeJs, 'rebuild', '--directory', root];
    if (env.ADAMP_WITH_CUDA !== undefined && env.ADAMP_WITH_CUDA !== '') {
      args.push(`--CDADAMP_WITH_CUDA=${truthy(env.ADAMP_WITH_CUDA) ? 'ON' : 'OFF'}`);
    }
    return { cmd: process.execPath, args, label: 'cmake-js' };
  }
  if (process.platform !== 'win32' && !has('make', ['--version'])) return { error: 'make is not installed (node-gyp needs it)' };
  // npm sets npm_config_node_gyp to its bundled node-gyp during lifecycle scripts.
  const gyp = env.npm_config_node_gyp || resolveBin('node-gyp/bin/node-gyp.js');
  if (!gyp) return { error: 'node-gyp is not available' };
  const args = [gyp, 'rebuild', '--jobs=max'];
  // Offline builds: node-gyp downloads Node's headers unless told where they are. An official
  // Node install (and Debian's with its headers) has them next to the executable: use those.
  const headers = localNodeHeaders();
  if (headers && !env.npm_config_nodedir) args.push(`--nodedir=${headers}`);
  return { cmd: process.execPath, args, label: 'node-gyp' };
}

/** Loads the freshly built addon in a child process. */
function verify() {
  const p = probe(path.join(root, 'build', 'Release', 'adamp.node'));
  if (p.error !== undefined) return { error: `the built addon does not load: ${p.error}` };
  const bad = mismatch(p.info, packageVersion());
  if (bad !== undefined) return { error: `the built addon does not fit: ${bad}` };
  return { ok: describeInfo(p.info) };
}

/** The most telling line of a failed build: a compiler/CMake error, node-gyp's stack message, or any error. */
function firstError(output, spawnError) {
  const lines = output.split('\n').map((l) => l.trim()).filter(Boolean);
  if (/network connectivity|getNodeDir|ENOTFOUND nodejs\.org|EAI_AGAIN/.test(output)) {
    return ": node-gyp could not download Node's headers (offline?): set npm_config_nodedir to a Node install that has include/node, or install cmake-js";
  }
  const pick =
    lines.find((l) => /\berror:|CMake Error|fatal error/i.test(l)) ||
    lines.find((l) => /ERR! stack Error/.test(l)) ||
    lines.find((l) => /ERR!|error/i.test(l));
  if (pick) return `: ${pick.replace(/^gyp ERR! stack /, '').slice(0, 200)}`;
  return spawnError ? `: ${spawnError.message}` : '';
}

function fail(message, log) {
  if (force) {
    if (log) process.stderr.write(log);
    process.stderr.write(`adamp: native build failed: ${message}\n`);
    process.exit(1);
  }
  say(`native addon not built (${message}); using the TypeScript backend. ADAMP_FORCE_BUILD=1 shows why.`);
  process.exit(0);
}

function main() {
  const rel = (f) => path.relative(root, f).split(path.sep).join('/');
  if (!force) {
    const pre = checkPrebuilt();
    if (pre.ok !== undefined) {
      say(`using the prebuilt native addon ${rel(pre.file)} (${pre.ok}); nothing to compile. ADAMP_FORCE_BUILD=1 builds from source.`);
      return;
    }
    if (truthy(env.ADAMP_SKIP_BUILD)) {
      say('ADAMP_SKIP_BUILD is set: native addon not built; the TypeScript backend will be used.');
      return;
    }
    say(pre.missing
      ? `no prebuilt native addon for ${PLATFORM}: building it from source.`
      : `the prebuilt native addon ${rel(pre.file)} cannot be used (${pre.error}): building from source.`);
  } else {
    say('ADAMP_FORCE_BUILD is set: building the native addon from source.');
  }

  const wanted = (env.ADAMP_BUILD || '').toLowerCase();
  if (wanted && wanted !== 'cmake' && wanted !== 'gyp') fail(`ADAMP_BUILD must be 'cmake' or 'gyp', got '${env.ADAMP_BUILD}'`);
  const toolchain = toolchainProblem();
  if (toolchain) fail(toolchain);
  const systems = wanted ? [wanted] : has('cmake', ['--version']) ? ['cmake', 'gyp'] : ['gyp'];

  const logFile = path.join(os.tmpdir(), `adamp-build-${process.pid}.log`);
  let log = '';
  const errors = [];
  for (const system of systems) {
    const c = buildCommand(system);
    if (c.error) {
      errors.push(`${system}: ${c.error}`);
      continue;
    }
    const started = Date.now();
    const r = spawnSync(c.cmd, c.args, { cwd: root, encoding: 'utf8', env, maxBuffer: 64 * 1024 * 1024 });
    log += `$ ${c.label} ${c.args.slice(1).join(' ')}\n${r.stdout || ''}${r.stderr || ''}\n`;
    if (r.status === 0) {
      const v = verify();
      if (v.ok !== undefined) {
        say(`native addon built with ${c.label} in ${((Date.now() - started) / 1000).toFixed(1)} s (${v.ok}).`);
        return;
      }
      errors.push(`${c.label}: ${v.error}`);
    } else {
      errors.push(`${c.label} failed${firstError(`${r.stdout || ''}\n${r.stderr || ''}`, r.error)}`);
    }
  }
  const lastError = errors.join('; ');
  if (log) {
    try {
      fs.writeFileSync(logFile, log);
    } catch {
      /* the message below still says what failed */
    }
  }
  fail(log ? `${lastError}; full log: ${logFile}` : lastError, log);
}

module.exports = { PLATFORM, SOURCE_DIRS, SOURCE_FILES, sourcesDigest, prebuiltDir, readManifest, probe, mismatch, checkPrebuilt, packageVersion, resolveBin, has };

if (require.main === module) main();
