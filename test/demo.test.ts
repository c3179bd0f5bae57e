/**
 * The toy demo end to end (a short run), its objective, and the SVG/table/progress helpers it
 * uses. The CLI itself is exercised as a child process in cli.test.ts.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { runToyDemo, cosineLr, type ToyDemoResult } from '../cli/demo/toy-demo';
import { DEFAULT_TOY, ToyProblem } from '../cli/demo/toy';
import { Rng } from '../cli/rng';
import { ProgressBar } from '../cli/demo/progress';
import { fmt, formatTable } from '../cli/demo/table';
import { formatTick, linearTicks, logTicks, renderFigure, xmlEscape } from '../cli/svg/chart';
import { parseXml, polylinePoints } from './helpers/xml';
import { availableBackends } from './helpers/backends';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'adamp-demo-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('toy demo, short run end to end', () => {
  let res: ToyDemoResult;
  const out = path.join(tmp, 'short');
  beforeAll(async () => {
    res = await runToyDemo({ steps: 300, seed: 3, out, backend: 'js', progress: null });
  });

  test('writes an SVG that parses as XML, with one polyline per run in each of the three panels', () => {
    expect(res.svgPath).toBe(path.join(out, 'toy-demo.svg'));
    const els = parseXml(fs.readFileSync(res.svgPath, 'utf8'));
    expect(els[0].name).toBe('svg');
    expect(els[0].attrs.xmlns).toBe('http://www.w3.org/2000/svg');
    const lines = els.filter((e) => e.name === 'polyline');
    // 3 panels x 4 runs; a series is split only where values are missing, which they are not here.
    expect(lines.length).toBe(12);
    const width = Number(els[0].attrs.width), height = Number(els[0].attrs.height);
    for (const l of lines) {
      const pts = polylinePoints(l);
      expect(pts.length).toBeGreaterThan(100);
      for (const [x, y] of pts) {
        expect(x).toBeGreaterThanOrEqual(0);
        expect(x).toBeLessThanOrEqual(width);
        expect(y).toBeGreaterThanOrEqual(0);
        expect(y).toBeLessThanOrEqual(height);
      }
    }
    const texts = fs.readFileSync(res.svgPath, 'utf8');
    for (const label of ['SGD', 'SGDP', 'AdamW', 'AdamP', 'Weight norm', 'Effective step size']) expect(texts).toContain(label);
  });

  test('writes JSON with the settings, a summary per run and full series', () => {
    const doc = JSON.parse(fs.readFileSync(res.jsonPath, 'utf8'));
    expect(doc.settings.steps).toBe(300);
    expect(doc.settings.seed).toBe(3);
    expect(doc.runs.map((r: { label: string }) => r.label)).toEqual(['SGD', 'SGDP', 'AdamW', 'AdamP']);
    for (const s of doc.series) {
      expect(s.loss).toHaveLength(300);
      expect(s.weightNorm).toHaveLength(300);
      expect(s.effectiveStepSize).toHaveLength(300);
      for (const v of [...s.loss, ...s.weightNorm, ...s.effectiveStepSize]) expect(Number.isFinite(v)).toBe(true);
    }
  });

  test('the table has a header, a rule and one row per optimizer', () => {
    const lines = res.table.split('\n');
    expect(lines).toHaveLength(6);
    expect(lines[0]).toMatch(/^optimizer\s+final loss\s+weight norm/);
    expect(lines[1]).toMatch(/^-+(\s+-+)+$/);
    expect(lines.slice(2).map((l) => l.split(/\s+/)[0])).toEqual(['SGD', 'SGDP', 'AdamW', 'AdamP']);
    for (const l of lines.slice(2)) expect(l.split(/\s{2,}/)).toHaveLength(7);
  });

  test("shows the paper's effect: momentum inflates the baselines' weight norm and shrinks their effective step size", () => {
    const [sgd, sgdp, adamw, adamp] = res.runs;
    expect(sgd.weightNorm / sgd.initialWeightNorm).toBeGreaterThan(3);
    expect(sgdp.weightNorm / sgdp.initialWeightNorm).toBeLessThan(2);
    expect(sgd.weightNorm).toBeGreaterThan(2 * sgdp.weightNorm);
    expect(adamw.weightNorm).toBeGreaterThan(1.4 * adamp.weightNorm);
    expect(sgdp.meanEffectiveStepSize).toBeGreaterThan(2 * sgd.meanEffectiveStepSize);
    expect(adamp.meanEffectiveStepSize).toBeGreaterThan(1.5 * adamw.meanEffectiveStepSize);
    expect(sgdp.finalLoss).toBeLessThan(sgd.finalLoss);
    for (const r of res.runs) expect(r.finalLoss).toBeLessThan(r.initialLoss / 10);
    expect(res.findings).toHaveLength(2);
    expect(res.findings[0]).toMatch(/^SGDP vs SGD: weight norm/);
  });

  test('baselines never project; the projected runs project every scale-invariant weight', () => {
    const [sgd, sgdp, adamw, adamp] = res.runs;
    for (const r of [sgd, adamw]) expect(r.projectionShare).toEqual({ channel: 0, layer: 0 });
    // Of the 4 eligible tensors, 2 are channel-normalized and 1 layer-normalized: >= 50% / >= 25%.
    for (const r of [sgdp, adamp]) {
      expect(r.projectionShare.channel).toBeGreaterThanOrEqual(0.5);
      expect(r.projectionShare.layer).toBeGreaterThanOrEqual(0.25);
      expect(r.projectionShare.channel + r.projectionShare.layer).toBeLessThanOrEqual(1);
    }
  });

  test('is deterministic for a seed and differs across seeds', async () => {
    const a = await runToyDemo({ steps: 25, seed: 7, out: path.join(tmp, 'a'), backend: 'js', progress: null });
    const b = await runToyDemo({ steps: 25, seed: 7, out: path.join(tmp, 'b'), backend: 'js', progress: null });
    const c = await runToyDemo({ steps: 25, seed: 8, out: path.join(tmp, 'c'), backend: 'js', progress: null });
    expect(b.series[1].loss).toEqual(a.series[1].loss);
    expect(b.runs).toEqual(a.runs);
    expect(c.series[1].loss).not.toEqual(a.series[1].loss);
  });

  test('every available CPU backend gives the same run (same decisions, float32-identical losses)', async () => {
    const others = availableBackends().filter((b) => b === 'native');
    if (others.length === 0) {
      console.log('demo.test: only the js backend is available; the cross-backend check of the demo is skipped');
      return;
    }
    const js = await runToyDemo({ steps: 60, seed: 4, out: path.join(tmp, 'x-js'), backend: 'js', progress: null });
    for (const b of others) {
      const other = await runToyDemo({ steps: 60, seed: 4, out: path.join(tmp, `x-${b}`), backend: b, progress: null });
      other.runs.forEach((r, k) => {
        expect(r.backend).toBe(b);
        expect(r.projectionShare).toEqual(js.runs[k].projectionShare);
        expect(Math.abs(r.finalLoss - js.runs[k].finalLoss)).toBeLessThanOrEqual(1e-5 * js.runs[k].finalLoss);
        expect(Math.abs(r.weightNorm - js.runs[k].weightNorm)).toBeLessThanOrEqual(1e-5 * js.runs[k].weightNorm);
      });
    }
  });

  test('rejects bad options with the option named', async () => {
    await expect(runToyDemo({ steps: 0, out: path.join(tmp, 'x'), progress: null })).rejects.toThrow(/steps must be an integer/);
    await expect(runToyDemo({ seed: 1.5, out: path.join(tmp, 'x'), progress: null })).rejects.toThrow(/seed must be an integer/);
    await expect(runToyDemo({ weightDecay: -1, out: path.join(tmp, 'x'), progress: null })).rejects.toThrow(/weight decay/);
  });
});

describe('toy objective', () => {
  const noiseless = { ...DEFAULT_TOY, noise: 0 };

  test('gradient matches finite differences (noise off)', () => {
    const prob = new ToyProblem(5, noiseless);
    const params = prob.makeParams();
    // Move off the initial point so plain tensors are not at a special place.
    const rng = new Rng(11);
    for (const p of params) for (let i = 0; i < p.data.length; i++) p.data[i] += 0.1 * rng.normal();
    prob.lossAndGrad(params);
    for (const p of params) {
      for (let trial = 0; trial < 5; trial++) {
        const i = rng.int(p.data.length);
        const x = p.data[i];
        const h = 1e-3 * Math.max(1, Math.abs(x));
        p.data[i] = x + h;
        const up = prob.loss(params);
        p.data[i] = x - h;
        const down = prob.loss(params);
        p.data[i] = x;
        const fd = (up - down) / (Math.fround(x + h) - Math.fround(x - h));
        expect(Math.abs(fd - p.grad![i])).toBeLessThan(2e-3 * Math.max(1, Math.abs(fd)));
      }
    }
  });

  test('scale-invariant tensors: loss unchanged by scaling, gradient orthogonal per normalized unit', () => {
    const prob = new ToyProblem(2, noiseless);
    const params = prob.makeParams();
    const base = prob.lossAndGrad(params);
    prob.tensors.forEach((t, k) => {
      const p = params[k];
      if (t.spec.kind === 'channel' || t.spec.kind === 'layer') {
        for (let r = 0; r < t.rows; r++) {
          let gw = 0, gg = 0, ww = 0;
          for (let j = 0; j < t.cols; j++) {
            const i = r * t.cols + j;
            gw += p.grad![i] * p.data[i]; gg += p.grad![i] ** 2; ww += p.data[i] ** 2;
          }
          expect(Math.abs(gw) / Math.sqrt(gg * ww)).toBeLessThan(1e-6);
        }
      }
    });
    // Scaling every scale-invariant row by 3 leaves the loss unchanged.
    prob.tensors.forEach((t, k) => {
      if (t.spec.kind === 'channel' || t.spec.kind === 'layer') for (let i = 0; i < params[k].data.length; i++) params[k].data[i] *= 3;
    });
    expect(prob.loss(params)).toBeCloseTo(base, 4);
  });

  test('noise stays tangent to the sphere and is reproducible', () => {
    const a = new ToyProblem(4);
    const b = new ToyProblem(4);
    const pa = a.makeParams(), pb = b.makeParams();
    a.lossAndGrad(pa); b.lossAndGrad(pb);
    expect(pb[0].grad).toEqual(pa[0].grad);
    const t = a.tensors[0];
    let gw = 0;
    for (let j = 0; j < t.cols; j++) gw += pa[0].grad![j] * pa[0].data[j];
    expect(Math.abs(gw)).toBeLessThan(1e-5);
  });

  test('cosine schedule goes from the base lr towards 0', () => {
    expect(cosineLr(0.1, 1, 100)).toBeCloseTo(0.1, 12);
    expect(cosineLr(0.1, 51, 100)).toBeCloseTo(0.05, 12);
    expect(cosineLr(0.1, 100, 100)).toBeLessThan(0.1 * 1e-3);
  });

  test('Rng is deterministic, uniform in [0,1), normals have mean ~0 and variance ~1', () => {
    const a = new Rng(42), b = new Rng(42);
    let s = 0, s2 = 0, mismatches = 0, outOfRange = 0;
    for (let i = 0; i < 20000; i++) {
      const u = a.uniform();
      if (u !== b.uniform()) mismatches++;
      if (!(u >= 0 && u < 1)) outOfRange++;
    }
    expect(mismatches).toBe(0);
    expect(outOfRange).toBe(0);
    for (let i = 0; i < 20000; i++) { const z = a.normal(); s += z; s2 += z * z; }
    expect(Math.abs(s / 20000)).toBeLessThan(0.03);
    expect(Math.abs(s2 / 20000 - 1)).toBeLessThan(0.05);
    expect(new Rng(1).uniform()).not.toBe(new Rng(2).uniform());
  });
});

describe('SVG chart writer', () => {
  test('escapes text, breaks lines at missing values, skips non-positive values on log axes', () => {
    const svg = renderFigure([
      { title: 'a < b & "c"', xLabel: 'x', yLabel: 'y', series: [{ name: "it's", color: '#000', x: [1, 2, 3, 4, 5, 6], y: [1, 2, NaN, 4, 5, 6] }] },
      { title: 'log', xLabel: 'x', yLabel: 'y', logY: true, series: [{ name: 'l', color: 'red', dashed: true, x: [1, 2, 3, 4, 5], y: [1e-3, 1e-2, 0, 1, 10] }] },
    ], { title: 'T', subtitle: 'S' });
    const els = parseXml(svg);
    const lines = els.filter((e) => e.name === 'polyline');
    expect(lines).toHaveLength(4);
    expect(lines.map((l) => polylinePoints(l).length)).toEqual([2, 3, 2, 2]);
    expect(lines[2].attrs['stroke-dasharray']).toBe('6 3');
    expect(svg).toContain('a &lt; b &amp; &quot;c&quot;');
    expect(xmlEscape(`<&>'"`)).toBe('&lt;&amp;&gt;&apos;&quot;');
  });

  test('ticks are round numbers covering the range', () => {
    expect(linearTicks(0, 1000)).toEqual([0, 200, 400, 600, 800, 1000]);
    const t = linearTicks(-0.05, 0.32);
    expect(t.length).toBeGreaterThanOrEqual(4);
    expect(t[0]).toBeGreaterThanOrEqual(-0.05);
    expect(t[t.length - 1]).toBeLessThanOrEqual(0.32 + 1e-12);
    expect(t).toContain(0);
    expect(t.every((v, i) => i === 0 || v > t[i - 1])).toBe(true);
    expect(logTicks(3e-5, 0.2)).toEqual([1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1]);
    expect(logTicks(1e-12, 1e3).length).toBeLessThanOrEqual(8);
    expect(formatTick(0)).toBe('0');
    expect(formatTick(2e-5)).toBe('2e-5');
    expect(formatTick(0.25)).toBe('0.25');
    expect(formatTick(1234567)).toBe('1.2e6');
  });
});

describe('progress bar and table', () => {
  test('without a TTY: one plain line per quarter', () => {
    const lines: string[] = [];
    const bar = new ProgressBar('run', 100, { write: (s: string) => lines.push(s), isTTY: false });
    for (let i = 1; i <= 100; i++) bar.update(i, 'loss 1');
    bar.finish();
    expect(lines).toHaveLength(4);
    expect(lines.map((l) => l.match(/(\d+)%/)![1])).toEqual(['25', '50', '75', '100']);
    for (const l of lines) expect(l.endsWith('\n')).toBe(true);
    expect(lines.join('')).not.toContain('\r');
  });

  test('on a TTY: redraws one line and ends it at finish', () => {
    const chunks: string[] = [];
    const bar = new ProgressBar('run', 10, { write: (s: string) => chunks.push(s), isTTY: true, columns: 80 });
    bar.update(5);
    bar.finish('done');
    expect(chunks[0].startsWith('\r')).toBe(true);
    expect(chunks.join('')).toContain('100%');
    expect(chunks[chunks.length - 1]).toBe('\n');
    expect(chunks.join('').split('\n')).toHaveLength(2);
  });

  test('null stream prints nothing; table aligns columns', () => {
    new ProgressBar('x', 3, null).finish();
    const t = formatTable(['name', 'value'], [['a', fmt(1.5)], ['longer', fmt(1e-7)]]);
    const lines = t.split('\n');
    expect(new Set(lines.map((l) => l.length)).size).toBe(1);
    expect(lines[3]).toMatch(/^longer\s+1\.00e-7$/);
    expect(fmt(NaN)).toBe('-');
    expect(fmt(Infinity)).toBe('inf');
  });
});
