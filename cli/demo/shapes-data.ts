/**
 * The embedded dataset of the training demo: small grayscale images of ten kinds of shapes,
 * drawn procedurally from a seed (no download, identical on every machine). Each image has a
 * random position, size, stroke width, contrast, background gradient and pixel noise, so the
 * classes are easy for a person and take a small conv net a few epochs to learn.
 */
import { Rng } from '../rng';

/** A dataset in memory: images `[n, size, size]` row-major in [0, 1], labels 0..classes-1. */
export interface ImageSet {
  images: Float32Array;
  labels: Uint8Array;
  count: number;
  height: number;
  width: number;
  classes: number;
  classNames: string[];
}

export const SHAPE_CLASSES = [
  'horizontal bar', 'vertical bar', 'diagonal \\', 'diagonal /', 'filled square',
  'hollow square', 'ring', 'disk', 'plus', 'cross',
] as const;

/** Distance from (px, py) to the segment (ax, ay)-(bx, by). */
function segDist(px: number, py: number, ax: number, ay: number, bx: number, by: number): number {
  const dx = bx - ax, dy = by - ay;
  const t = Math.max(0, Math.min(1, ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy)));
  const qx = ax + t * dx - px, qy = ay + t * dy - py;
  return Math.sqrt(qx * qx + qy * qy);
}

/**
 * Signed "inside-ness" of pixel centre (x, y) for a shape of class `c` centred at (cx, cy) with
 * half-size `r` and stroke half-width `w`: > 0 inside. Anti-aliased by the caller.
 */
function shapeField(c: number, x: number, y: number, cx: number, cy: number, r: number, w: number): number {
  const dx = x - cx, dy = y - cy;
  switch (c) {
    case 0: return w - segDist(x, y, cx - r, cy, cx + r, cy);
    case 1: return w - segDist(x, y, cx, cy - r, cx, cy + r);
    case 2: return w - segDist(x, y, cx - r * 0.8, cy - r * 0.8, cx + r * 0.8, cy + r * 0.8);
    case 3: return w - segDist(x, y, cx - r * 0.8, cy + r * 0.8, cx + r * 0.8, cy - r * 0.8);
    case 4: return r * 0.8 - Math.max(Math.abs(dx), Math.abs(dy));
    case 5: return w - Math.abs(Math.max(Math.abs(dx), Math.abs(dy)) - r * 0.8);
    case 6: return w - Math.abs(Math.sqrt(dx * dx + dy * dy) - r * 0.85);
    case 7: return r * 0.85 - Math.sqrt(dx * dx + dy * dy);
    case 8: return w - Math.min(segDist(x, y, cx - r, cy, cx + r, cy), segDist(x, y, cx, cy - r, cx, cy + r));
    default: {
      const k = r * 0.8;
      return w - Math.min(segDist(x, y, cx - k, cy - k, cx + k, cy + k), segDist(x, y, cx - k, cy + k, cx + k, cy - k));
    }
  }
}

/** Draws `count` images of `size x size` pixels; classes are balanced and interleaved. */
export function makeShapes(count: number, seed: number, size = 16): ImageSet {
  const rng = new Rng(seed);
  const images = new Float32Array(count * size * size);
  const labels = new Uint8Array(count);
  const classes = SHAPE_CLASSES.length;
  for (let n = 0; n < count; n++) {
    const c = n % classes;
    labels[n] = c;
    const r = size * (0.2 + 0.15 * rng.uniform());
    const cx = r + 0.5 + rng.uniform() * (size - 2 * r - 1);
    const cy = r + 0.5 + rng.uniform() * (size - 2 * r - 1);
    const w = 0.6 + 0.7 * rng.uniform();
    const fg = 0.55 + 0.45 * rng.uniform();
    const bg = 0.25 * rng.uniform();
    const gx = (rng.uniform() - 0.5) * 0.3 / size, gy = (rng.uniform() - 0.5) * 0.3 / size;
    const noise = 0.05 + 0.1 * rng.uniform();
    const o = n * size * size;
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const f = shapeField(c, x + 0.5, y + 0.5, cx, cy, r, w);
        const cover = Math.max(0, Math.min(1, f + 0.5)); // one-pixel anti-aliasing ramp
        const back = bg + gx * (x - size / 2) + gy * (y - size / 2);
        const v = back + (fg - back) * cover + noise * rng.normal();
        images[o + y * size + x] = Math.max(0, Math.min(1, v));
      }
    }
  }
  // Shuffle so batches mix classes (the interleaving above already balances them).
  const order = Array.from({ length: count }, (_, i) => i);
  rng.shuffle(order);
  const img2 = new Float32Array(images.length);
  const lab2 = new Uint8Array(count);
  const px = size * size;
  order.forEach((src, dst) => {
    img2.set(images.subarray(src * px, (src + 1) * px), dst * px);
    lab2[dst] = labels[src];
  });
  return { images: img2, labels: lab2, count, height: size, width: size, classes, classNames: [...SHAPE_CLASSES] };
}
