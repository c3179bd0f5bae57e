/**
 * The layers stay visible (docs/architecture.md): lib/ imports form a DAG and never reach into
 * cli/; importing DeviceTensor loads no engine; environment variables are read in one place; the
 * repository stands alone (no reference to material outside it).
 */
import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

const root = path.join(__dirname, '..');

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...tsFiles(p));
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** Every relative module a file imports (values and types, static and dynamic), resolved to a file. */
function importsOf(file: string): string[] {
  const src = fs.readFileSync(file, 'utf8');
  const specs = new Set<string>();
  const re = /(?:import|export)\s+(?:type\s+)?(?:[^'";]*?\sfrom\s+)?['"]([^'"]+)['"]|(?:require|import)\(\s*['"]([^'"]+)['"]\s*\)|import\(\s*['"]([^'"]+)['"]\s*\)/g;
  for (let m = re.exec(src); m !== null; m = re.exec(src)) {
    const s = m[1] ?? m[2] ?? m[3];
    if (s.startsWith('.')) specs.add(s);
  }
  const out: string[] = [];
  for (const s of specs) {
    const base = path.resolve(path.dirname(file), s);
    const hit = [`${base}.ts`, path.join(base, 'index.ts')].find((f) => fs.existsSync(f));
    if (hit) out.push(hit);
  }
  return out;
}

describe('lib/ imports', () => {
  const files = tsFiles(path.join(root, 'lib'));
  const graph = new Map(files.map((f) => [f, importsOf(f)]));

  test('form a DAG (type imports included)', () => {
    const state = new Map<string, 'active' | 'done'>();
    const stack: string[] = [];
    const cycles: string[] = [];
    const visit = (f: string): void => {
      state.set(f, 'active');
      stack.push(f);
      for (const d of graph.get(f) ?? []) {
        if (state.get(d) === 'active') cycles.push([...stack.slice(stack.indexOf(d)), d].map((x) => path.relative(root, x)).join(' -> '));
        else if (!state.has(d)) visit(d);
      }
      stack.pop();
      state.set(f, 'done');
    };
    for (const f of files) if (!state.has(f)) visit(f);
    expect(cycles).toEqual([]);
    expect(files.length).toBeGreaterThan(30);
  });

  test('never reach into cli/ (the command line, bench, demo and charts)', () => {
    const bad = [...graph].flatMap(([f, ds]) => ds.filter((d) => !d.startsWith(path.join(root, 'lib') + path.sep)).map((d) => `${path.relative(root, f)} -> ${path.relative(root, d)}`));
    expect(bad).toEqual([]);
  });

  test('read the environment only in lib/core/env.ts', () => {
    const readers = files.filter((f) => /process\.env\b/.test(fs.readFileSync(f, 'utf8'))).map((f) => path.relative(root, f));
    expect(readers).toEqual([path.join('lib', 'core', 'env.ts')]);
  });
});

test('importing DeviceTensor loads no engine and no WebAssembly kernel (child process, built package)', () => {
  const r = spawnSync(process.execPath, ['-e', `
    require(${JSON.stringify(path.join(root, 'dist', 'lib', 'device', 'tensor.js'))});
    const loaded = Object.keys(require.cache).map((f) => f.split(require('path').sep).join('/'));
    console.log(JSON.stringify(loaded.filter((f) => /backends\\/(js|native|select)|optimizer\\.js|kernel-wasm/.test(f))));
  `], { encoding: 'utf8' });
  expect(r.stderr).toBe('');
  expect(JSON.parse(r.stdout)).toEqual([]);
});

test('the native code reads no environment variable outside its tests and benchmarks', () => {
  const hits = execFileSync('git', ['grep', '-l', 'getenv', '--', 'native'], { cwd: root, encoding: 'utf8' }).split('\n').filter(Boolean);
  expect(hits.filter((f) => !f.startsWith('native/tests/'))).toEqual([]);
});

test('the repository stands alone: no file refers to material outside it', () => {
  // Tracked files and new ones not ignored; bench results are data written by earlier tools.
  const files = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard'], { cwd: root, encoding: 'utf8' })
    .split('\n').filter((f) => f && !f.startsWith('bench/results/') && fs.existsSync(path.join(root, f)));
  const outside = /\.\.\/shared\b|\bshared\/(reference|GPU\.md|PERF-NOTES|BUILD-NOTES|STYLE|bench)|\bSPEC\.md\b/;
  const bad = files.filter((f) => f !== 'test/architecture.test.ts' && outside.test(fs.readFileSync(path.join(root, f), 'utf8')));
  expect(bad).toEqual([]);
});
