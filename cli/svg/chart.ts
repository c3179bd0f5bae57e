/**
 * A tiny dependency-free SVG line-chart writer: a grid of panels sharing one legend, each with
 * linear or logarithmic y axis, ticks, grid lines and one polyline per series (broken where a
 * value is missing, not finite, or not positive on a log axis).
 */

/** One line of a chart. */
export interface Series {
  name: string;
  /** Any SVG colour. */
  color: string;
  dashed?: boolean;
  x: ArrayLike<number>;
  y: ArrayLike<number>;
}

/** One panel. */
export interface ChartSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  logY?: boolean;
  /** Log axis only: show at most this many decades below the largest value (smaller values sit on the bottom edge). */
  logDecades?: number;
  series: readonly Series[];
}

/** The figure's layout. */
export interface FigureOptions {
  title?: string;
  subtitle?: string;
  /** Panels per row. Default: all in one row, up to 3. */
  columns?: number;
  panelWidth?: number;
  panelHeight?: number;
  /** Most points drawn per series (evenly subsampled, last point kept). Default 600. */
  maxPoints?: number;
}

const MARGIN = { left: 64, right: 16, top: 28, bottom: 44 };

/** Escapes text for SVG/XML content and attribute values. */
export function xmlEscape(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/** A short, readable tick label. */
export function formatTick(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) {
    const [m, e] = v.toExponential(1).split('e');
    const mant = m.replace(/\.0$/, '');
    return `${mant}e${Number(e)}`;
  }
  return String(Number(v.toPrecision(4)));
}

/** About `count` round tick values covering [lo, hi]. */
export function linearTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const norm = raw / mag;
  const step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
  const ticks: number[] = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(Math.abs(t) < step * 1e-9 ? 0 : t);
  return ticks;
}

/** Powers of ten covering [lo, hi] (both > 0), thinned to at most ~7 labels. */
export function logTicks(lo: number, hi: number): number[] {
  const a = Math.floor(Math.log10(lo));
  const b = Math.ceil(Math.log10(hi));
  const every = Math.max(1, Math.ceil((b - a) / 7));
  const ticks: number[] = [];
  for (let e = a; e <= b; e += every) ticks.push(Number(`1e${e}`)); // exact decimal, unlike Math.pow(10, -5)
  return ticks;
}

interface Range { lo: number; hi: number }

function dataRange(series: readonly Series[], axis: 'x' | 'y', log: boolean): Range | null {
  let lo = Infinity, hi = -Infinity;
  for (const s of series) {
    const v = s[axis];
    for (let i = 0; i < v.length; i++) {
      const x = v[i];
      if (!Number.isFinite(x) || (log && x <= 0)) continue;
      if (x < lo) lo = x;
      if (x > hi) hi = x;
    }
  }
  return lo <= hi ? { lo, hi } : null;
}

/** Indices to draw: at most `max`, evenly spread, always including the last. */
function sampleIndices(n: number, max: number): number[] {
  if (n <= max) return Array.from({ length: n }, (_, i) => i);
  const out: number[] = [];
  for (let k = 0; k < max - 1; k++) out.push(Math.floor((k * (n - 1)) / (max - 1)));
  out.push(n - 1);
  return out;
}

function renderPanel(spec: ChartSpec, x0: number, y0: number, w: number, h: number, maxPoints: number): string {
  const out: string[] = [];
  const plotW = w - MARGIN.left - MARGIN.right;
  const plotH = h - MARGIN.top - MARGIN.bottom;
  const px = x0 + MARGIN.left, py = y0 + MARGIN.top;
  const log = spec.logY === true;
  const xr = dataRange(spec.series, 'x', false) ?? { lo: 0, hi: 1 };
  let yr = dataRange(spec.series, 'y', log) ?? (log ? { lo: 1, hi: 10 } : { lo: 0, hi: 1 });
  if (xr.hi === xr.lo) xr.hi = xr.lo + 1;
  let yTicks: number[];
  if (log) {
    if (spec.logDecades !== undefined) yr = { lo: Math.max(yr.lo, yr.hi / Math.pow(10, spec.logDecades)), hi: yr.hi };
    yTicks = logTicks(yr.lo, yr.hi);
    if (yr.hi / yr.lo < 10) {
      // Less than a decade: pad to the surrounding powers of ten so the axis has labels.
      yr = { lo: Math.min(yr.lo, yTicks[0]), hi: Math.max(yr.hi, yTicks[yTicks.length - 1]) };
    }
  } else {
    if (yr.hi === yr.lo) yr = { lo: yr.lo - 1, hi: yr.hi + 1 };
    const pad = (yr.hi - yr.lo) * 0.05;
    yr = { lo: yr.lo - pad, hi: yr.hi + pad };
    yTicks = linearTicks(yr.lo, yr.hi);
  }
  const ty = (v: number): number => {
    const f = log ? (Math.log10(v) - Math.log10(yr.lo)) / (Math.log10(yr.hi) - Math.log10(yr.lo)) : (v - yr.lo) / (yr.hi - yr.lo);
    return py + plotH - f * plotH;
  };
  const tx = (v: number): number => px + ((v - xr.lo) / (xr.hi - xr.lo)) * plotW;
  const r = (v: number): string => v.toFixed(1);

  out.push(`<g class="panel">`);
  out.push(`<text x="${r(px + plotW / 2)}" y="${r(y0 + 18)}" text-anchor="middle" font-size="13" font-weight="bold">${xmlEscape(spec.title)}</text>`);
  out.push(`<rect x="${r(px)}" y="${r(py)}" width="${r(plotW)}" height="${r(plotH)}" fill="#ffffff" stroke="#444444" stroke-width="1"/>`);
  for (const t of yTicks) {
    if (t < yr.lo * (1 - 1e-9) || t > yr.hi * (1 + 1e-9) + (log ? 0 : 1e-12)) continue;
    const y = ty(t);
    out.push(`<line x1="${r(px)}" y1="${r(y)}" x2="${r(px + plotW)}" y2="${r(y)}" stroke="#e4e4e4" stroke-width="1"/>`);
    out.push(`<text x="${r(px - 5)}" y="${r(y + 4)}" text-anchor="end" font-size="10">${xmlEscape(formatTick(t))}</text>`);
  }
  for (const t of linearTicks(xr.lo, xr.hi)) {
    const x = tx(t);
    out.push(`<line x1="${r(x)}" y1="${r(py)}" x2="${r(x)}" y2="${r(py + plotH)}" stroke="#f0f0f0" stroke-width="1"/>`);
    out.push(`<text x="${r(x)}" y="${r(py + plotH + 14)}" text-anchor="middle" font-size="10">${xmlEscape(formatTick(t))}</text>`);
  }
  out.push(`<text x="${r(px + plotW / 2)}" y="${r(py + plotH + 32)}" text-anchor="middle" font-size="11">${xmlEscape(spec.xLabel)}</text>`);
  const ly = py + plotH / 2;
  out.push(`<text x="${r(x0 + 14)}" y="${r(ly)}" text-anchor="middle" font-size="11" transform="rotate(-90 ${r(x0 + 14)} ${r(ly)})">${xmlEscape(spec.yLabel + (log ? ' (log)' : ''))}</text>`);

  for (const s of spec.series) {
    const n = Math.min(s.x.length, s.y.length);
    let run: string[] = [];
    const flush = (): void => {
      if (run.length >= 2) {
        out.push(`<polyline fill="none" stroke="${xmlEscape(s.color)}" stroke-width="1.6"${s.dashed ? ' stroke-dasharray="6 3"' : ''} points="${run.join(' ')}"><title>${xmlEscape(s.name)}</title></polyline>`);
      }
      run = [];
    };
    for (const i of sampleIndices(n, maxPoints)) {
      const xv = s.x[i], yv = s.y[i];
      if (!Number.isFinite(xv) || !Number.isFinite(yv) || (log && yv <= 0)) {
        flush();
        continue;
      }
      run.push(`${r(tx(xv))},${r(ty(Math.min(Math.max(yv, yr.lo), yr.hi)))}`);
    }
    flush();
  }
  out.push(`</g>`);
  return out.join('\n');
}

/** Renders panels into one standalone SVG document. */
export function renderFigure(charts: readonly ChartSpec[], options: FigureOptions = {}): string {
  const columns = Math.max(1, options.columns ?? Math.min(3, charts.length));
  const pw = options.panelWidth ?? 400;
  const ph = options.panelHeight ?? 300;
  const maxPoints = options.maxPoints ?? 600;
  const rows = Math.ceil(charts.length / columns);
  // One legend for the figure: every distinct series name, in first-seen order.
  const legend: Series[] = [];
  for (const c of charts) for (const s of c.series) if (!legend.some((l) => l.name === s.name)) legend.push(s);
  const headerH = (options.title ? 26 : 0) + (options.subtitle ? 18 : 0) + (legend.length ? 24 : 0) + 8;
  const width = columns * pw;
  const height = headerH + rows * ph;
  const out: string[] = [];
  out.push(`<?xml version="1.0" encoding="UTF-8"?>`);
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif">`);
  out.push(`<rect x="0" y="0" width="${width}" height="${height}" fill="#fafafa"/>`);
  let y = 0;
  if (options.title) {
    y += 22;
    out.push(`<text x="${width / 2}" y="${y}" text-anchor="middle" font-size="16" font-weight="bold">${xmlEscape(options.title)}</text>`);
  }
  if (options.subtitle) {
    y += 18;
    out.push(`<text x="${width / 2}" y="${y}" text-anchor="middle" font-size="11" fill="#555555">${xmlEscape(options.subtitle)}</text>`);
  }
  if (legend.length) {
    y += 20;
    const itemW = Math.min(180, Math.floor(width / legend.length));
    let x = Math.max(8, (width - itemW * legend.length) / 2);
    out.push(`<g class="legend">`);
    for (const s of legend) {
      out.push(`<line x1="${x}" y1="${y - 4}" x2="${x + 26}" y2="${y - 4}" stroke="${xmlEscape(s.color)}" stroke-width="2.5"${s.dashed ? ' stroke-dasharray="6 3"' : ''}/>`);
      out.push(`<text x="${x + 32}" y="${y}" font-size="12">${xmlEscape(s.name)}</text>`);
      x += itemW;
    }
    out.push(`</g>`);
  }
  charts.forEach((c, k) => {
    const col = k % columns, row = Math.floor(k / columns);
    out.push(renderPanel(c, col * pw, headerH + row * ph, pw, ph, maxPoints));
  });
  out.push(`</svg>`);
  return out.join('\n') + '\n';
}
