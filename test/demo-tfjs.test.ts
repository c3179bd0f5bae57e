/**
 * The TensorFlow.js training demo end to end (a tiny configuration), its embedded dataset and
 * its IDX (MNIST / Fashion-MNIST) reader.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as zlib from 'zlib';
import { makeShapes, SHAPE_CLASSES } from '../cli/demo/shapes-data';
import { loadIdxSplit, parseIdx, readIdxFile } from '../cli/demo/idx';
import { runTfjsDemo, type TfjsDemoResult } from '../cli/demo/tfjs-demo';
import { parseXml, polylinePoints } from './helpers/xml';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'adamp-tfjs-demo-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** An IDX file: magic 0x00000801/0x00000803, big-endian dims, unsigned bytes. */
function idx(dims: number[], data: Uint8Array): Buffer {
  const head = Buffer.alloc(4 + 4 * dims.length);
  head[2] = 0x08;
  head[3] = dims.length;
  dims.forEach((d, i) => head.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([head, Buffer.from(data)]);
}

/** A tiny MNIST-like folder: `n` 8x8 images whose label is the row that is lit. */
function fakeMnist(dir: string, nTrain: number, nTest: number, gzip: boolean): void {
  fs.mkdirSync(dir, { recursive: true });
  const write = (name: string, buf: Buffer): void => {
    fs.writeFileSync(path.join(dir, gzip ? `${name}.gz` : name), gzip ? zlib.gzipSync(buf) : buf);
  };
  for (const [split, n] of [['train', nTrain], ['t10k', nTest]] as const) {
    const images = new Uint8Array(n * 64);
    const labels = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const label = i % 8;
      labels[i] = label;
      for (let x = 0; x < 8; x++) images[i * 64 + label * 8 + x] = 200 + ((i * 7 + x) % 56);
    }
    write(`${split}-images-idx3-ubyte`, idx([n, 8, 8], images));
    write(`${split}-labels-idx1-ubyte`, idx([n], labels));
  }
}

describe('IDX reader', () => {
  test('parses headers and data; rejects malformed files with the reason', () => {
    const a = parseIdx(idx([2, 3], Uint8Array.from([1, 2, 3, 4, 5, 6])));
    expect(a.dims).toEqual([2, 3]);
    expect(Array.from(a.data)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(() => parseIdx(Uint8Array.from([1, 2, 8, 1]), 'f')).toThrow(/f: not an IDX file/);
    expect(() => parseIdx(Uint8Array.from([0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0]), 'f')).toThrow(/type 0xd is not supported/);
    expect(() => parseIdx(idx([4], Uint8Array.from([1, 2, 3])), 'f')).toThrow(/header says 4 = 4 bytes of data, the file has 3/);
    expect(() => parseIdx(Uint8Array.from([0, 0]), 'f')).toThrow(/too short/);
  });

  test('reads plain and gzipped folders the same, scales to [0, 1] and honours the limit', () => {
    fakeMnist(path.join(tmp, 'plain'), 40, 16, false);
    fakeMnist(path.join(tmp, 'gz'), 40, 16, true);
    const a = loadIdxSplit(path.join(tmp, 'plain'), 'train');
    const b = loadIdxSplit(path.join(tmp, 'gz'), 'train');
    expect(a.count).toBe(40);
    expect([a.height, a.width]).toEqual([8, 8]);
    expect(b.images).toEqual(a.images);
    expect(b.labels).toEqual(a.labels);
    expect(Math.max(...a.images)).toBeLessThanOrEqual(1);
    expect(a.images[3 * 64 + 3 * 8]).toBeCloseTo((200 + 21) / 255, 6);
    const limited = loadIdxSplit(path.join(tmp, 'gz'), 'test', 5);
    expect(limited.count).toBe(5);
    expect(limited.labels).toHaveLength(5);
    expect(readIdxFile(path.join(tmp, 'gz'), 't10k-labels-idx1-ubyte').dims).toEqual([16]);
  });

  test('a folder without the files says which files it expects', () => {
    fs.mkdirSync(path.join(tmp, 'empty'), { recursive: true });
    expect(() => loadIdxSplit(path.join(tmp, 'empty'), 'train')).toThrow(/no train files; expected train-images-idx3-ubyte and train-labels-idx1-ubyte \(plain or \.gz\)/);
    expect(() => loadIdxSplit(path.join(tmp, 'nope'), 'train')).toThrow(/not a folder/);
  });

  const fashion = '/usr/share/datasets/fashion-mnist';
  (fs.existsSync(fashion) ? test : test.skip)('reads Debian\'s Fashion-MNIST (dataset-fashion-mnist) when installed', () => {
    const t = loadIdxSplit(fashion, 'test', 100);
    expect([t.count, t.height, t.width, t.classes]).toEqual([100, 28, 28, 10]);
    expect(t.classNames[9]).toBe('Ankle boot');
  });
});

describe('embedded shapes dataset', () => {
  test('is deterministic per seed, balanced, and in [0, 1]', () => {
    const a = makeShapes(200, 5);
    const b = makeShapes(200, 5);
    const c = makeShapes(200, 6);
    expect(b.images).toEqual(a.images);
    expect(b.labels).toEqual(a.labels);
    expect(c.images).not.toEqual(a.images);
    const counts = new Array(SHAPE_CLASSES.length).fill(0);
    for (const l of a.labels) counts[l]++;
    expect(counts).toEqual(new Array(10).fill(20));
    let lo = Infinity, hi = -Infinity;
    for (const v of a.images) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    expect(lo).toBeGreaterThanOrEqual(0);
    expect(hi).toBeLessThanOrEqual(1);
    expect(hi).toBeGreaterThan(0.5);
  });

  test('classes differ on average (the task is learnable)', () => {
    const s = makeShapes(1000, 3);
    const px = s.height * s.width;
    const mean = (c: number): Float64Array => {
      const m = new Float64Array(px);
      let n = 0;
      for (let i = 0; i < s.count; i++) if (s.labels[i] === c) { n++; for (let j = 0; j < px; j++) m[j] += s.images[i * px + j]; }
      return m.map((v) => v / n);
    };
    const h = mean(0), v = mean(1);
    let diff = 0;
    for (let j = 0; j < px; j++) diff += Math.abs(h[j] - v[j]);
    expect(diff / px).toBeGreaterThan(0.02);
  });
});

describe('TensorFlow.js training demo (tiny)', () => {
  let res: TfjsDemoResult;
  const out = path.join(tmp, 'tfjs-out');
  const lines: string[] = [];
  beforeAll(async () => {
    fakeMnist(path.join(tmp, 'mnist'), 96, 32, true);
    res = await runTfjsDemo({
      epochs: 2, data: path.join(tmp, 'mnist'), optimizers: ['sgd', 'sgdp'], out, backend: 'js',
      progress: null, log: (s) => lines.push(s),
    });
  }, 240_000);

  test('reports the dataset and one summary per run', () => {
    expect(lines[0]).toMatch(/^Data: .*mnist \(IDX\): 96 train \/ 32 test images, 8x8; 2 epochs/);
    expect(res.runs.map((r) => r.label)).toEqual(['SGD', 'SGDP']);
    for (const r of res.runs) {
      expect(r.backend).toBe('js');
      expect(r.testAccuracy).toBeGreaterThanOrEqual(0);
      expect(r.testAccuracy).toBeLessThanOrEqual(1);
      expect(Number.isFinite(r.testLoss)).toBe(true);
      expect(r.weightNorm).toBeGreaterThan(0);
      expect(r.meanEffectiveStepSize).toBeGreaterThan(0);
    }
  });

  test('the baseline never projects; SGDP projects the BN-followed kernels every step', () => {
    const [sgd, sgdp] = res.runs;
    expect(sgd.projectionShare).toEqual({ channel: 0, layer: 0 });
    // Eligible: fc1, fc2 (followed by batch norm, channel view per output unit) and the classifier.
    expect(sgdp.projectionShare.channel).toBeGreaterThanOrEqual(2 / 3 - 1e-9);
  });

  test('the table has a row per run; the SVG parses with accuracy, norm and step-size lines', () => {
    const rows = res.table.split('\n');
    expect(rows[0]).toMatch(/^optimizer\s+test acc\s+test loss\s+train loss\s+weight norm/);
    expect(rows.slice(2).map((l) => l.split(/\s+/)[0])).toEqual(['SGD', 'SGDP']);
    const svgFile = res.files.find((f) => f.endsWith('.svg'))!;
    const els = parseXml(fs.readFileSync(svgFile, 'utf8'));
    const lines = els.filter((e) => e.name === 'polyline');
    expect(lines).toHaveLength(6);
    expect(polylinePoints(lines[0])).toHaveLength(2); // accuracy: one point per epoch
    expect(polylinePoints(lines[2]).length).toBe(2 * 3); // 96 images / batch 32 = 3 steps per epoch
    const doc = JSON.parse(fs.readFileSync(res.files.find((f) => f.endsWith('.json'))!, 'utf8'));
    expect(doc.series[0].epochTestAccuracy).toHaveLength(2);
    expect(doc.series[1].weightNorm).toHaveLength(6);
  });

  test('rejects unknown optimizers and bad epochs, naming them', async () => {
    await expect(runTfjsDemo({ optimizers: ['adam'], out, progress: null })).rejects.toThrow(/unknown optimizer 'adam': choose from sgd, sgdp, adamw, adamp/);
    await expect(runTfjsDemo({ epochs: 0, out, progress: null })).rejects.toThrow(/epochs must be an integer/);
  });
});
