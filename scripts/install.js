#!/usr/bin/env node
/**
 * npm's install step: build the native addon, and never fail the install because of it.
 *
 * cmake-js (CMakeLists.txt) when `cmake` is on the PATH, else node-gyp (binding.gyp, CPU only).
 * On failure it prints one line and exits 0: the package then runs on its TypeScript backend.
 *
 * Environment:
 *   ADAMP_SKIP_BUILD=1    do not build (the TypeScript backend is used unless an addon is found)
 *   ADAMP_FORCE_BUILD=1   a failed build fails the install, with the whole build log
 *   ADAMP_BUILD=cmake|gyp choose the build system
 *   ADAMP_WITH_CUDA=0|1   CMake only: never / always build the CUDA engine (default: when nvcc is found)
 */
'use strict';

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const env = process.env;
const truthy = (v) => v !== undefined && /^(1|true|yes|on)$/i.test(v);
const force = truthy(env.ADAMP_FORCE_BUILD);

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

/** The command that builds with the chosen system, or a reason why it cannot run. */
function buildCommand(system) {
  if (system === 'cmake') {
    if (!has('cmake', ['--version'])) return { error: 'cmake is not installed (install CMake >= 3.19, or set ADAMP_BUILD=gyp)' };
    const cmakeJs = resolveBin('cmake-js/bin/cmake-js');
    if (!cmakeJs) return { error: 'the cmake-js package is missing' };
    const args = [cmakeJs, 'rebuild', '--directory', root];
    if (env.ADAMP_WITH_CUDA !== undefined && env.ADAMP_WITH_CUDA !== '') {
      args.push(`--CDADAMP_WITH_CUDA=${truthy(env.ADAMP_WITH_CUDA) ? 'ON' : 'OFF'}`);
    }
    return { cmd: process.execPath, args, label: 'cmake-js' };
  }
  // npm sets npm_config_node_gyp to its bundled node-gyp during lifecycle scripts.
  const gyp = env.npm_config_node_gyp || resolveBin('node-gyp/bin/node-gyp.js');
  if (!gyp) return { error: 'node-gyp is not available' };
  return { cmd: process.execPath, args: [gyp, 'rebuild'], label: 'node-gyp' };
}

/** Loads the fresh addon in a child process (a broken binary must not take this process down). */
function verify() {
  const file = path.join(root, 'build', 'Release', 'adamp.node');
  const code = `const a = require(${JSON.stringify(file)}); const i = a.info(); process.stdout.write(i.simd + (i.cuda ? ', cuda' : ''));`;
  const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8' });
  if (r.status !== 0) return { error: `the built addon does not load: ${(r.stderr || '').trim().split('\n')[0]}` };
  return { ok: r.stdout };
}

/** The most telling line of a failed build: a compiler/CMake error, node-gyp's stack message, or any error. */
function firstError(output, spawnError) {
  const lines = output.split('\n').map((l) => l.trim()).filter(Boolean);
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
  if (truthy(env.ADAMP_SKIP_BUILD)) {
    say('ADAMP_SKIP_BUILD is set: native addon not built; the TypeScript backend will be used.');
    return;
  }
  const wanted = (env.ADAMP_BUILD || '').toLowerCase();
  if (wanted && wanted !== 'cmake' && wanted !== 'gyp') fail(`ADAMP_BUILD must be 'cmake' or 'gyp', got '${env.ADAMP_BUILD}'`);
  const systems = wanted ? [wanted] : has('cmake', ['--version']) ? ['cmake', 'gyp'] : ['gyp'];

  const logFile = path.join(os.tmpdir(), `adamp-build-${process.pid}.log`);
  let log = '';
  let lastError = '';
  for (const system of systems) {
    const c = buildCommand(system);
    if (c.error) {
      lastError = `${system}: ${c.error}`;
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
      lastError = `${c.label}: ${v.error}`;
    } else {
      lastError = `${c.label} failed${firstError(`${r.stdout || ''}\n${r.stderr || ''}`, r.error)}`;
    }
  }
  try {
    fs.writeFileSync(logFile, log);
  } catch {
    /* the message below still says what failed */
  }
  fail(log ? `${lastError}; full log: ${logFile}` : lastError, log);
}

main();
