/**
 * Reads the IDX files of MNIST and Fashion-MNIST (plain or gzipped), the format of
 * http://yann.lecun.com/exdb/mnist/: a magic number (0x0000, type code 0x08 = unsigned byte,
 * number of dimensions), the dimensions as big-endian uint32, then the data.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as zlib from 'zlib';
import type { ImageSet } from './shapes-data';

export interface IdxArray {
  dims: number[];
  data: Uint8Array;
}

/** Parses one IDX buffer (unsigned-byte data only, as MNIST uses). */
export function parseIdx(buf: Uint8Array, where = 'IDX data'): IdxArray {
  if (buf.length < 4) throw new Error(`${where}: too short for an IDX header (${buf.length} bytes)`);
  if (buf[0] !== 0 || buf[1] !== 0) throw new Error(`${where}: not an IDX file (magic ${Array.from(buf.subarray(0, 4)).join(',')})`);
  if (buf[2] !== 0x08) throw new Error(`${where}: IDX type 0x${buf[2].toString(16)} is not supported (only unsigned bytes, 0x08)`);
  const nd = buf[3];
  if (nd < 1 || nd > 4) throw new Error(`${where}: ${nd} dimensions is not a plausible IDX header`);
  if (buf.length < 4 + 4 * nd) throw new Error(`${where}: truncated header`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const dims: number[] = [];
  for (let i = 0; i < nd; i++) dims.push(view.getUint32(4 + 4 * i, false));
  const n = dims.reduce((a, b) => a * b, 1);
  const start = 4 + 4 * nd;
  if (buf.length - start !== n) {
    throw new Error(`${where}: header says ${dims.join('x')} = ${n} bytes of data, the file has ${buf.length - start}`);
  }
  return { dims, data: buf.subarray(start) };
}

/** Reads `base` or `base.gz` from `dir` (gzip detected by its magic bytes, whatever the name). */
export function readIdxFile(dir: string, base: string): IdxArray {
  const candidates = [base, `${base}.gz`];
  for (const name of candidates) {
    const file = path.join(dir, name);
    if (!fs.existsSync(file)) continue;
    let buf: Uint8Array = fs.readFileSync(file);
    if (buf[0] === 0x1f && buf[1] === 0x8b) {
      try {
        buf = zlib.gunzipSync(buf);
      } catch (e) {
        throw new Error(`${file}: cannot decompress: ${(e as Error).message}`);
      }
    }
    return parseIdx(buf, file);
  }
  throw new Error(`${path.join(dir, base)}[.gz] not found`);
}

/** The standard file names of MNIST-style datasets (some mirrors use dots instead of dashes). */
const NAMES = {
  train: [['train-images-idx3-ubyte', 'train-labels-idx1-ubyte'], ['train-images.idx3-ubyte', 'train-labels.idx1-ubyte']],
  test: [['t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'], ['t10k-images.idx3-ubyte', 't10k-labels.idx1-ubyte']],
} as const;

function exists(dir: string, base: string): boolean {
  return fs.existsSync(path.join(dir, base)) || fs.existsSync(path.join(dir, `${base}.gz`));
}

/** Loads the train or test split of an MNIST-style folder as images in [0, 1]. */
export function loadIdxSplit(dir: string, split: 'train' | 'test', limit?: number): ImageSet {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new Error(`--data ${dir}: not a folder`);
  const pair = NAMES[split].find(([img, lab]) => exists(dir, img) && exists(dir, lab));
  if (!pair) {
    throw new Error(`--data ${dir}: no ${split} files; expected ${NAMES[split][0].join(' and ')} (plain or .gz), ` +
      'as in MNIST or Fashion-MNIST (Debian: apt install dataset-fashion-mnist -> /usr/share/datasets/fashion-mnist)');
  }
  const img = readIdxFile(dir, pair[0]);
  const lab = readIdxFile(dir, pair[1]);
  if (img.dims.length !== 3) throw new Error(`${pair[0]}: expected 3 dimensions (count, rows, cols), got ${img.dims.join('x')}`);
  if (lab.dims.length !== 1) throw new Error(`${pair[1]}: expected 1 dimension, got ${lab.dims.join('x')}`);
  if (img.dims[0] !== lab.dims[0]) throw new Error(`${dir}: ${img.dims[0]} ${split} images but ${lab.dims[0]} labels`);
  const count = Math.min(img.dims[0], limit ?? Infinity);
  const [, height, width] = img.dims;
  const images = new Float32Array(count * height * width);
  for (let i = 0; i < images.length; i++) images[i] = img.data[i] / 255;
  const labels = Uint8Array.from(lab.data.subarray(0, count));
  let classes = 0;
  for (const l of labels) classes = Math.max(classes, l + 1);
  const fashion = /fashion/i.test(dir);
  const classNames = fashion
    ? ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot']
    : Array.from({ length: Math.max(10, classes) }, (_, i) => String(i));
  return { images, labels, count, height, width, classes: Math.max(10, classes), classNames };
}
