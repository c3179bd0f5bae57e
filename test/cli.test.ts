/**
 * The `adamp` command as a user runs it: `node dist/cli.js ...` in a child process (dist/ is
 * built by the suite's global setup), checking exit codes, stdout/stderr and the files written.
 */
import { spawnSync, type SpawnSyncReturns } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as zlib from 'zlib';
import { parseXml } from './helpers/xml';

const root = path.join(__dirname, '..');
const cli = path.join(root, 'dist', 'cli', 'main.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'adamp-cli-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function adamp(args: string[], cwd = tmp): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [cli, ...args], { cwd, encoding: 'utf8', timeout: 240_000 });
}

const pythonHasTorch = spawnSync('/usr/bin/python3', ['-c', 'import torch'], { encoding: 'utf8' }).status === 0;

beforeAll(() => {
  if (!fs.existsSync(cli)) throw new Error(`${cli} is missing: the global setup builds it (npm run build:ts)`);
});

describe('adamp (no command, help, version)', () => {
  test('the compiled CLI starts with a node shebang (package.json bin)', () => {
    expect(fs.readFileSync(cli, 'utf8').split('\n')[0]).toBe('#!/usr/bin/env node');
    const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
    expect(path.normalize(pkg.bin.adamp)).toBe(path.normalize('dist/cli/main.js'));
  });

  test('--help lists the commands and exits 0', () => {
    const r = adamp(['--help']);
    expect(r.status).toBe(0);
    for (const c of ['demo', 'bench', 'info']) expect(r.stdout).toMatch(new RegExp(`^  ${c}\\s+\\S`, 'm'));
  });

  test('no command prints the help and exits 2', () => {
    const r = adamp([]);
    expect(r.status).toBe(2);
    expect(r.stdout).toContain('Usage: adamp <command>');
  });

  test('--version prints the package version', () => {
    const r = adamp(['--version']);
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe(JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).version);
  });

  test('an unknown command is a usage error naming it', () => {
    const r = adamp(['trian']);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("unknown command 'trian'");
    expect(r.stderr).toContain('demo, bench, info');
    expect(r.stdout).toBe('');
  });

  test.each([
    [['demo', '--stpes', '5'], /unknown option '--stpes' for 'adamp demo' \(did you mean --steps\?\)/],
    [['demo', '--steps', 'ten'], /option --steps must be an integer, got 'ten'/],
    [['demo', '--steps', '0'], /option --steps must be >= 1, got 0/],
    [['demo', '--steps'], /option --steps needs a value/],
    [['demo', '--backend', 'gpu'], /option --backend must be one of auto, js, native; got 'gpu'/],
    [['demo', '--epochs', '2'], /--epochs needs --tfjs/],
    [['demo', 'extra'], /unexpected argument 'extra'/],
    [['info', '--jsn'], /unknown option '--jsn' for 'adamp info'/],
    [['bench', '--threads', '0'], /'0' is not a positive integer/],
    [['bench', '--backends', 'gpu'], /'gpu' is not one of js, native/],
  ])('usage error: adamp %j', (args, message) => {
    const r = adamp(args as string[]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(message as RegExp);
    expect(r.stderr).toContain(`Run 'adamp ${(args as string[])[0]} --help'`);
  });

  test.each(['demo', 'bench', 'info'])('adamp %s --help shows its options and exits 0', (cmd) => {
    const r = adamp([cmd, '--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`Usage: adamp ${cmd}`);
    expect(r.stdout).toContain('--help, -h');
  });
});

describe('adamp info', () => {
  test('prints every backend with its availability and reason', () => {
    const r = adamp(['info']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^js\s+available\s+\S/m);
    expect(r.stdout).toMatch(/^native\s+(available|unavailable)\s+\S/m);
    expect(r.stdout).toMatch(/^cuda\s+(available|unavailable)\s+\S/m);
    expect(r.stdout).toMatch(/backend 'auto' uses: (native|js)/);
  });

  test('--json is machine-readable and agrees with backends()', () => {
    const r = adamp(['info', '--json']);
    expect(r.status).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.node).toBe(process.version);
    const names = doc.backends.map((b: { name: string }) => b.name).sort();
    expect(names).toEqual(['cuda', 'js', 'native']);
    for (const b of doc.backends) {
      expect(typeof b.available).toBe('boolean');
      expect(typeof b.reason).toBe('string');
      expect(b.reason.length).toBeGreaterThan(0);
    }
    expect(doc.backends.find((b: { name: string }) => b.name === 'js').available).toBe(true);
  });
});

describe('adamp demo', () => {
  test('a short toy run prints the table, reports progress on stderr and writes SVG + JSON', () => {
    const out = path.join(tmp, 'demo-out');
    const r = adamp(['demo', '--steps', '40', '--seed', '2', '--out', out]);
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.status).toBe(0);
    const rows = r.stdout.split('\n').filter((l) => /^(SGD|SGDP|AdamW|AdamP)\s+\d/.test(l));
    expect(rows.map((l) => l.split(/\s+/)[0])).toEqual(['SGD', 'SGDP', 'AdamW', 'AdamP']);
    expect(r.stdout).toMatch(/^optimizer\s+final loss\s+weight norm\s+x init\s+mean eff\. step\s+proj\. channel\s+proj\. layer$/m);
    expect(r.stdout).toContain(`Wrote ${path.join(out, 'toy-demo.svg')}`);
    // Not a TTY: plain progress lines, one per quarter per run, no carriage returns.
    expect(r.stderr).not.toContain('\r');
    expect(r.stderr.split('\n').filter((l) => /100% \(40\/40\)/.test(l))).toHaveLength(4);
    const svg = fs.readFileSync(path.join(out, 'toy-demo.svg'), 'utf8');
    expect(parseXml(svg).filter((e) => e.name === 'polyline').length).toBe(12);
    const doc = JSON.parse(fs.readFileSync(path.join(out, 'toy-demo.json'), 'utf8'));
    expect(doc.settings).toMatchObject({ steps: 40, seed: 2 });
  });

  test('the default output folder is ./adamp-demo in the working directory', () => {
    const cwd = fs.mkdtempSync(path.join(tmp, 'cwd-'));
    const r = adamp(['demo', '--steps', '5', '--backend', 'js'], cwd);
    expect(r.status).toBe(0);
    expect(fs.existsSync(path.join(cwd, 'adamp-demo', 'toy-demo.svg'))).toBe(true);
    expect(r.stdout).toContain('Backend: js.');
  });

  test('an output path that cannot be created fails with exit 1 and a message', () => {
    const file = path.join(tmp, 'a-file');
    fs.writeFileSync(file, 'x');
    const r = adamp(['demo', '--steps', '3', '--out', path.join(file, 'sub')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^adamp demo: error: .*(ENOTDIR|EEXIST)/m);
  });
});

describe('adamp demo --tfjs', () => {
  test('trains on an IDX folder (gzipped) and writes the results', () => {
    const data = path.join(tmp, 'idx');
    fs.mkdirSync(data, { recursive: true });
    const n = 64, nt = 16;
    const header = (dims: number[]): Buffer => {
      const h = Buffer.alloc(4 + 4 * dims.length);
      h[2] = 8;
      h[3] = dims.length;
      dims.forEach((d, i) => h.writeUInt32BE(d, 4 + 4 * i));
      return h;
    };
    for (const [split, count] of [['train', n], ['t10k', nt]] as const) {
      const img = Buffer.alloc(count * 36), lab = Buffer.alloc(count);
      for (let i = 0; i < count; i++) { lab[i] = i % 6; for (let x = 0; x < 6; x++) img[i * 36 + (i % 6) * 6 + x] = 255; }
      fs.writeFileSync(path.join(data, `${split}-images-idx3-ubyte.gz`), zlib.gzipSync(Buffer.concat([header([count, 6, 6]), img])));
      fs.writeFileSync(path.join(data, `${split}-labels-idx1-ubyte`), Buffer.concat([header([count]), lab]));
    }
    const out = path.join(tmp, 'tfjs-out');
    const r = adamp(['demo', '--tfjs', '--data', data, '--epochs', '1', '--optimizers', 'adamw,adamp', '--out', out]);
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^Data: .*64 train \/ 16 test images, 6x6; 1 epochs/m);
    expect(r.stdout.split('\n').filter((l) => /^(AdamW|AdamP)\s+\d+(\.\d)?%/.test(l))).toHaveLength(2);
    expect(r.stderr).toMatch(/AdamP epoch 1\/1: 100% \(2\/2\)/);
    expect(fs.existsSync(path.join(out, 'tfjs-demo.svg'))).toBe(true);
    expect(parseXml(fs.readFileSync(path.join(out, 'tfjs-demo.svg'), 'utf8')).filter((e) => e.name === 'polyline').length).toBeGreaterThanOrEqual(4);
  });

  test('a missing data folder is an error with exit 1; toy-only options are usage errors', () => {
    const r = adamp(['demo', '--tfjs', '--data', path.join(tmp, 'no-such-dir')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/adamp demo: error: --data .*no-such-dir: not a folder/);
    const u = adamp(['demo', '--tfjs', '--steps', '5']);
    expect(u.status).toBe(2);
    expect(u.stderr).toContain('--steps is for the toy demo; use --epochs with --tfjs');
  });
});

describe('adamp bench (tiny parameter set)', () => {
  const shapes = path.join(tmp, 'shapes.json');
  beforeAll(() => {
    fs.writeFileSync(shapes, JSON.stringify({ tiny: { about: 'test', shapes: [[16, 8, 3, 3], [16], [32, 64], [10, 32], [128, 4]] } }));
  });

  test('times AdamP/SGDP per backend and gradient mode, checks the modes, writes JSON', () => {
    const out = path.join(tmp, 'bench.json');
    const r = adamp(['bench', '--shapes', shapes, '--set', 'tiny', '--steps', '2', '--warmup', '1', '--no-torch', '--backends', 'js', '--out', out]);
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`Wrote ${out}`);
    const doc = JSON.parse(fs.readFileSync(out, 'utf8'));
    expect(doc.settings.torchSkipped).toBe('disabled with --no-torch');
    const js = doc.rows.filter((x: { impl: string }) => x.impl === 'js');
    expect(js.map((x: { algo: string; mode: string }) => `${x.algo}/${x.mode}`).sort()).toEqual(['adamp/fire', 'adamp/random', 'sgdp/fire', 'sgdp/random']);
    for (const x of js) {
      expect(x.numel).toBe(16 * 72 + 16 + 32 * 64 + 10 * 32 + 128 * 4);
      expect(x.timesMs).toHaveLength(2);
      expect(x.medianMs).toBeGreaterThan(0);
      expect(x.elementsPerSec).toBeCloseTo(x.numel / (x.medianMs / 1e3), 6);
      // Orthogonal gradients: the channel projection fires on every eligible tensor.
      if (x.mode === 'fire') expect(x.projection.channel).toBe(1);
      else expect(x.projection.channel).toBe(0);
    }
  });

  test('native rows carry their floor stepped alternately with them, and the interleaved ratio is reported', () => {
    const info = JSON.parse(adamp(['info', '--json']).stdout);
    if (!info.backends.find((b: { name: string; available: boolean }) => b.name === 'native' && b.available)) {
      // eslint-disable-next-line no-console
      console.warn('skipped: the native addon is not built here (the interleaved floor is a native kernel)');
      return;
    }
    const out = path.join(tmp, 'bench-native.json');
    const r = adamp(['bench', '--shapes', shapes, '--set', 'tiny', '--steps', '3', '--warmup', '1', '--threads', '1', '--no-torch', '--backends', 'native', '--out', out]);
    expect(r.status).toBe(0);
    const doc = JSON.parse(fs.readFileSync(out, 'utf8'));
    const native = doc.rows.filter((x: { impl: string }) => x.impl === 'native');
    expect(native).toHaveLength(4);
    for (const x of native) {
      const f = x.interleavedFloor;
      expect(f.algo).toBe(x.algo === 'adamp' ? 'adam' : 'sgd');
      expect(f.timesMs).toHaveLength(3);
      expect(f.ratio).toBeGreaterThan(0);
      const ratios = x.timesMs.map((t: number, i: number) => t / f.timesMs[i]).sort((a: number, b: number) => a - b);
      expect(f.ratio).toBeCloseTo(ratios[1], 9);
      const q = doc.ratios.find((y: { what: string; mode: string }) => y.what === `native ${x.algo} / native one-pass ${f.algo}, interleaved` && y.mode === x.mode);
      expect(q.ratio).toBe(f.ratio);
    }
  });

  (pythonHasTorch ? test : test.skip)('with PyTorch: runs the official algorithm in the same run and reports ratios', () => {
    const out = path.join(tmp, 'bench-torch.json');
    const r = adamp(['bench', '--shapes', shapes, '--set', 'tiny', '--steps', '1', '--warmup', '0', '--threads', '1', '--backends', 'js', '--out', out]);
    expect(r.status).toBe(0);
    const doc = JSON.parse(fs.readFileSync(out, 'utf8'));
    expect(doc.torch.version).toMatch(/^\d+\.\d+/);
    expect(doc.settings.torchMalloc).toEqual({ MALLOC_MMAP_THRESHOLD_: '33554432', MALLOC_TRIM_THRESHOLD_: '1073741824' });
    expect(doc.torch.malloc).toEqual(doc.settings.torchMalloc);
    const official = doc.rows.filter((x: { impl: string }) => x.impl === 'torch-official');
    expect(official).toHaveLength(4);
    for (const x of official) {
      if (x.mode === 'fire') expect(x.projection.channel).toBe(1);
    }
    expect(doc.rows.filter((x: { impl: string }) => x.impl === 'torch').map((x: { algo: string }) => x.algo).sort()).toEqual(['adam', 'sgd']);
    const ratio = doc.ratios.find((q: { what: string; mode: string }) => q.what.startsWith('js adamp / torch-official adamp') && q.mode === 'fire');
    const js = doc.rows.find((x: { impl: string; algo: string; mode: string }) => x.impl === 'js' && x.algo === 'adamp' && x.mode === 'fire');
    const tor = official.find((x: { algo: string; mode: string }) => x.algo === 'adamp' && x.mode === 'fire');
    expect(ratio.ratio).toBeCloseTo(js.medianMs / tor.medianMs, 9);
  });

  test('an unknown parameter set is an error that lists the known ones', () => {
    const r = adamp(['bench', '--shapes', shapes, '--set', 'vgg', '--no-torch']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/unknown parameter set 'vgg'; .* has tiny/);
  });
});

if (!pythonHasTorch) {
  // eslint-disable-next-line no-console
  console.log('cli.test: the PyTorch comparison test is skipped: /usr/bin/python3 cannot import torch');
}
