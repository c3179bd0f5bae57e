/**
 * The package as users load it: `require('adamp')` and `import { AdamP } from 'adamp'` resolve
 * through package.json `exports` to the built dist/, in a real child process.
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

const root = path.join(__dirname, '..');

function node(args: string[]): string {
  return execFileSync(process.execPath, args, { cwd: root, encoding: 'utf8' });
}

test('require("adamp") works from CommonJS and steps a param', () => {
  const out = node(['-e', `
    const { AdamP, SGDP, backends } = require('adamp');
    const p = { data: new Float32Array([1, 2, 3, 4]), grad: new Float32Array([0.1, -0.1, 0.2, 0]), shape: [2, 2] };
    const opt = new AdamP([p], { lr: 0.1 });
    opt.step();
    console.log(JSON.stringify({ a: typeof AdamP, s: typeof SGDP, b: backends().map((b) => b.name), moved: p.data[0] !== 1, backend: opt.backend }));
  `]);
  const r = JSON.parse(out.trim().split('\n').pop()!);
  expect(r).toMatchObject({ a: 'function', s: 'function', b: ['cuda', 'native', 'js'], moved: true });
});

test('import { AdamP } from "adamp" works from an ES module', () => {
  const out = node(['--input-type=module', '-e', `
    import { AdamP, SGDP } from 'adamp';
    import adamp from 'adamp';
    console.log(typeof AdamP, typeof SGDP, typeof adamp.backends);
  `]);
  expect(out.trim()).toBe('function function function');
});

test('the published typings exist for the entry point', () => {
  const pkg = require(path.join(root, 'package.json'));
  expect(pkg.exports['.'].types).toBe('./dist/lib/index.d.ts');
  expect(require('fs').existsSync(path.join(root, 'dist', 'lib', 'index.d.ts'))).toBe(true);
});

// ---------------------------------------------------------------------------------------------
// What the tarball holds: what users run (dist without source maps, the native sources and
// build files to build from source, the prebuilds, docs), not tests or benchmark tooling.

describe('the packed tarball', () => {
  let files: string[] = [];
  beforeAll(() => {
    const npm = process.env.npm_execpath && /npm-cli\.js$/.test(process.env.npm_execpath)
      ? [process.execPath, process.env.npm_execpath]
      : ['npm'];
    // --ignore-scripts: the file list only (no prepack build, no tsc racing other test files).
    const out = execFileSync(npm[0], [...npm.slice(1), 'pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
    files = (JSON.parse(out) as { files: { path: string }[] }[])[0].files.map((f) => f.path);
  }, 120000);

  test('ships the entry points, typings, CLI, install script, native sources, build files and docs', () => {
    for (const f of [
      'package.json', 'README.md', 'LICENSE', 'dist/lib/index.js', 'dist/lib/index.d.ts', 'dist/lib/tfjs/index.js', 'dist/cli/main.js',
      'scripts/install.js', 'CMakeLists.txt', 'binding.gyp', 'bench/shapes.json', 'scripts/bench_torch_cpu.py', 'scripts/official_torch.py',
      'docs/install.md', 'docs/configuration.md',
    ]) expect(files).toContain(f);
  });

  test('ships every source the CMake and node-gyp builds compile (a from-source build works from the tarball)', () => {
    const gyp = fs.readFileSync(path.join(root, 'binding.gyp'), 'utf8');
    const cmake = fs.readFileSync(path.join(root, 'CMakeLists.txt'), 'utf8');
    const sources = new Set([...`${gyp}\n${cmake}`.matchAll(/native\/(?:binding|cpu|cuda|include|mpi)\/[\w/.-]+\.(?:cc|cpp|cu|h)/g)].map((m) => m[0]));
    expect(sources.size).toBeGreaterThan(5);
    for (const s of sources) expect(files).toContain(s);
    const tracked = execFileSync('git', ['ls-files', 'native/binding', 'native/cpu', 'native/cuda', 'native/include', 'native/mpi'], { cwd: root, encoding: 'utf8' }).split('\n').filter(Boolean);
    for (const t of tracked) expect(files).toContain(t);
  });

  test('does not ship tests, source maps, TypeScript sources, benchmark tooling or maintainers-only files', () => {
    const bad = files.filter((f) =>
      /\.map$/.test(f) ||
      /^(test|lib|cli|examples|bench\/results|\.github|\.ci)\//.test(f) ||
      /^native\/tests\//.test(f) ||
      (/^scripts\//.test(f) && !['scripts/install.js', 'scripts/bench_torch_cpu.py', 'scripts/official_torch.py'].includes(f)) ||
      f === 'docs/gpu-runner.md' ||
      (/^prebuilds\//.test(f) && !/^prebuilds\/[a-z0-9]+-[a-z0-9]+\/(adamp\.(node|json)|adamp_mpi\.node)$/.test(f)) ||
      /^(build|build-[^/]+|dist\/test)\//.test(f));
    expect(bad).toEqual([]);
  });

  test('the files the CLI reads at run time are in it (bench shapes, the PyTorch comparison)', () => {
    const cpu = fs.readFileSync(path.join(root, 'cli', 'bench', 'cpu.ts'), 'utf8');
    for (const m of cpu.matchAll(/path\.join\(PACKAGE_ROOT, ([^)]+)\)/g)) {
      const rel = [...m[1].matchAll(/'([^']+)'/g)].map((x) => x[1]).join('/');
      expect(files).toContain(rel);
    }
  });
});

describe('package.json: install and packing', () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));

  test('cmake-js is for building from source only: a devDependency and an optional peer, not something every install pulls in', () => {
    expect(pkg.dependencies['cmake-js']).toBeUndefined();
    expect(pkg.devDependencies['cmake-js']).toMatch(/^\^8/);
    expect(pkg.peerDependencies['cmake-js']).toBe(pkg.devDependencies['cmake-js']);
    expect(pkg.peerDependenciesMeta['cmake-js']).toEqual({ optional: true });
    expect(Object.keys(pkg.dependencies).sort()).toEqual(['bindings', 'node-addon-api']);
  });

  test('install uses the prebuilt or builds; packing makes the prebuilt (kept when fresh); `npm run prebuild` rebuilds it', () => {
    expect(pkg.scripts.install).toBe('node scripts/install.js');
    expect(pkg.scripts.prepack).toBe('node scripts/prebuild.js --if-stale --optional');
    expect(pkg.scripts.prebuild).toBe('node scripts/prebuild.js');
    expect(pkg.binary).toEqual({ napi_versions: [8] }); // cmake-js offline: Node-API headers from node-api-headers
    expect(pkg.files).toContain('prebuilds');
  });

  test('every run-time environment switch is documented in docs/configuration.md', () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { ENV_SWITCHES } = require('../lib/core/env') as { ENV_SWITCHES: Record<string, string> };
    const doc = fs.readFileSync(path.join(root, 'docs', 'configuration.md'), 'utf8');
    for (const k of Object.keys(ENV_SWITCHES)) expect(doc).toContain(`| \`${k}\` |`);
    expect(ENV_SWITCHES).toHaveProperty('ADAMP_QUIET');
  });
});

describe('.github/workflows/release.yml', () => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const yaml = require('js-yaml') as { safeLoad: (s: string) => unknown };
  type Step = { name?: string; uses?: string; run?: string; with?: Record<string, unknown>; env?: Record<string, string> };
  type Job = { 'runs-on': string; needs?: string | string[]; if?: string; permissions?: Record<string, string>; container?: unknown; strategy?: { matrix?: { include?: Record<string, string | boolean>[] } }; steps: Step[] };
  const wf = yaml.safeLoad(fs.readFileSync(path.join(root, '.github', 'workflows', 'release.yml'), 'utf8')) as { on: Record<string, unknown>; permissions: unknown; jobs: Record<string, Job> };
  const runs = (j: Job): string => j.steps.map((s) => s.run ?? '').join('\n');

  test('builds a prebuilt for each hosted platform with scripts/prebuild.js: linux-x64 with CUDA in manylinux_2_28, the others CPU only', () => {
    const include = [...(wf.jobs['prebuild-linux'].strategy?.matrix?.include ?? []), ...(wf.jobs['prebuild-other'].strategy?.matrix?.include ?? [])];
    expect(include.map((m) => m.platform).sort()).toEqual(['darwin-arm64', 'darwin-x64', 'linux-arm64', 'linux-x64', 'win32-x64']);
    const linux64 = include.find((m) => m.platform === 'linux-x64')!;
    expect(linux64).toMatchObject({ cuda: 'on', image: expect.stringMatching(/manylinux_2_28_x86_64/) });
    expect(include.find((m) => m.platform === 'linux-arm64')).toMatchObject({ cuda: 'off', runner: expect.stringMatching(/arm/) });
    for (const id of ['prebuild-linux', 'prebuild-other']) {
      expect(runs(wf.jobs[id])).toMatch(/node scripts\/prebuild\.js --cuda=/);
      const up = wf.jobs[id].steps.find((s) => s.uses?.startsWith('actions/upload-artifact@'))!;
      expect(up.with).toMatchObject({ name: 'prebuild-${{ matrix.platform }}', path: 'prebuilds/' });
    }
    expect(runs(wf.jobs['prebuild-linux'])).toMatch(/cuda-nvcc-13-0[^\n]*cuda-cudart-devel-13-0/);
  });

  test('packs once, after checking every collected prebuilt, and installs the tarball on each platform', () => {
    const pack = wf.jobs.pack;
    expect([pack.needs].flat()).toEqual(['prebuild-linux', 'prebuild-other']);
    const dl = pack.steps.find((s) => s.uses?.startsWith('actions/download-artifact@'))!;
    expect(dl.with).toMatchObject({ pattern: 'prebuild-*', path: 'prebuilds', 'merge-multiple': true });
    expect(runs(pack)).toMatch(/node scripts\/prebuild\.js --check --require linux-x64:cuda,linux-arm64,darwin-arm64,darwin-x64 --max-glibc 2\.28/);
    expect(runs(pack)).toMatch(/^npm pack --json/m);
    expect(runs(wf.jobs.smoke)).toMatch(/node scripts\/smoke-installed\.js/);
    expect(fs.existsSync(path.join(root, 'scripts', 'smoke-installed.js'))).toBe(true);
  });

  test('publishes with provenance on a tag only; only the publish job may mint an OIDC token', () => {
    expect(Object.keys(wf.on).sort()).toEqual(['push', 'workflow_dispatch']);
    expect(wf.on.push).toEqual({ tags: ['v*'] });
    expect(wf.permissions).toEqual({ contents: 'read' });
    const pub = wf.jobs.publish;
    expect([pub.needs].flat().sort()).toEqual(['pack', 'smoke']);
    expect(pub.if).toMatch(/github\.ref_type == 'tag'/);
    expect(pub.permissions).toEqual({ contents: 'read', 'id-token': 'write' });
    expect(runs(pub)).toMatch(/npm publish "\$tarball" --provenance --access public/);
    for (const [id, job] of Object.entries(wf.jobs)) if (id !== 'publish') expect(job.permissions).toBeUndefined();
  });
});
