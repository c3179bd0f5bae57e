/**
 * The toy demo: the paper's effect on a scale-invariant objective, with no framework.
 *
 * Four runs from the same initial point and the same gradient noise: SGD vs SGDP and AdamW vs
 * AdamP, the baselines being the registered SGD and AdamW (torch.optim's semantics, as in the
 * paper's comparisons) with the same hyperparameters. Momentum inflates the norm of
 * scale-invariant weights, which shrinks the effective step size ||dw|| / ||w|| long before the
 * learning-rate schedule intends to; the projection removes the radial part of the update and
 * keeps the norm, and the effective step size, where they were.
 */
import * as fs from 'fs';
import * as path from 'path';
import { AdamP, AdamW, SGD, SGDP } from '../../lib/index';
import type { Param, ParamStepInfo } from '../../lib/types';
import { renderFigure, type ChartSpec } from '../svg/chart';
import { ProgressBar, type ProgressStream } from './progress';
import { fmt, formatTable, pct } from './table';
import { DEFAULT_TOY, isScaleInvariant, ToyProblem, type ToyConfig } from './toy';

/** The embedded defaults of `adamp demo`. */
export const TOY_DEFAULTS = {
  steps: 1000,
  seed: 1,
  out: 'adamp-demo',
  /** SGD and SGDP: learning rate and momentum. */
  sgd: { lr: 0.1, momentum: 0.9 },
  /** AdamW and AdamP: learning rate (betas and eps are the defaults). */
  adam: { lr: 0.01 },
  /** Decoupled weight decay for every run (0: the effect is the momentum's alone). */
  weightDecay: 0,
  problem: DEFAULT_TOY,
} as const;

/** Options of `runToyDemo`; every one has an embedded default. */
export interface ToyDemoOptions {
  steps?: number;
  seed?: number;
  /** Output folder for `toy-demo.svg` and `toy-demo.json`. */
  out?: string;
  backend?: 'auto' | 'js' | 'native';
  weightDecay?: number;
  problem?: ToyConfig;
  /** Where the progress bar goes (default: stderr); `null` for none. */
  progress?: ProgressStream | null;
}

/** One optimizer's outcome. */
export interface ToyRunSummary {
  label: string;
  family: 'sgd' | 'adam';
  projection: boolean;
  backend: string;
  initialLoss: number;
  finalLoss: number;
  /** ||w|| over the scale-invariant weights at the end, and at the start. */
  weightNorm: number;
  initialWeightNorm: number;
  /** Mean over steps of the effective step size ||dw|| / ||w|| of the scale-invariant weights. */
  meanEffectiveStepSize: number;
  /** Share of (eligible param, step) pairs where the channel / layer projection fired. */
  projectionShare: { channel: number; layer: number };
}

/** Per-step series of one run (index = step - 1). */
export interface ToySeries {
  loss: Float64Array;
  weightNorm: Float64Array;
  effectiveStepSize: Float64Array;
  lr: Float64Array;
}

export interface ToyDemoResult {
  settings: { steps: number; seed: number; weightDecay: number; sgd: typeof TOY_DEFAULTS.sgd; adam: typeof TOY_DEFAULTS.adam; schedule: string };
  runs: ToyRunSummary[];
  series: ToySeries[];
  table: string;
  /** Sentences comparing each projected run with its baseline, computed from the numbers. */
  findings: string[];
  svgPath: string;
  jsonPath: string;
}

interface RunSpec {
  label: string;
  family: 'sgd' | 'adam';
  projection: boolean;
  color: string;
}

const RUNS: readonly RunSpec[] = [
  { label: 'SGD', family: 'sgd', projection: false, color: '#1f77b4' },
  { label: 'SGDP', family: 'sgd', projection: true, color: '#1f77b4' },
  { label: 'AdamW', family: 'adam', projection: false, color: '#d62728' },
  { label: 'AdamP', family: 'adam', projection: true, color: '#d62728' },
];

/** Cosine learning-rate schedule from `base` to 0 over `steps` (step is 1-based). */
export function cosineLr(base: number, step: number, steps: number): number {
  return base * 0.5 * (1 + Math.cos((Math.PI * (step - 1)) / steps));
}

function checkInt(name: string, v: number, min: number, max: number): void {
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new RangeError(`${name} must be an integer in [${min}, ${max}], got ${String(v)}`);
  }
}

/** Runs the four optimizers, writes the SVG and JSON, and returns the numbers and the table. */
export async function runToyDemo(options: ToyDemoOptions = {}): Promise<ToyDemoResult> {
  const steps = options.steps ?? TOY_DEFAULTS.steps;
  const seed = options.seed ?? TOY_DEFAULTS.seed;
  const out = options.out ?? TOY_DEFAULTS.out;
  const weightDecay = options.weightDecay ?? TOY_DEFAULTS.weightDecay;
  const problem = options.problem ?? TOY_DEFAULTS.problem;
  checkInt('steps', steps, 1, 10_000_000);
  checkInt('seed', seed, 0, 2 ** 31 - 1);
  if (!Number.isFinite(weightDecay) || weightDecay < 0) throw new RangeError(`weight decay must be a finite number >= 0, got ${String(weightDecay)}`);
  const progress = options.progress === undefined ? process.stderr : options.progress;
  fs.mkdirSync(out, { recursive: true }); // fail before the runs, not after, when `out` cannot be created

  const runs: ToyRunSummary[] = [];
  const series: ToySeries[] = [];
  for (const spec of RUNS) {
    const r = await runOne(spec, { steps, seed, weightDecay, problem, backend: options.backend ?? 'auto', progress });
    runs.push(r.summary);
    series.push(r.series);
  }

  const table = formatTable(
    ['optimizer', 'final loss', 'weight norm', 'x init', 'mean eff. step', 'proj. channel', 'proj. layer'],
    runs.map((r) => [
      r.label, fmt(r.finalLoss), fmt(r.weightNorm), `${(r.weightNorm / r.initialWeightNorm).toFixed(2)}x`,
      fmt(r.meanEffectiveStepSize), pct(r.projectionShare.channel), pct(r.projectionShare.layer),
    ]),
  );
  const findings = [compare(runs[0], runs[1]), compare(runs[2], runs[3])];

  const svgPath = path.join(out, 'toy-demo.svg');
  const jsonPath = path.join(out, 'toy-demo.json');
  const x = Float64Array.from({ length: steps }, (_, i) => i + 1);
  const panel = (title: string, yLabel: string, key: keyof ToySeries, logY: boolean, logDecades?: number): ChartSpec => ({
    title, xLabel: 'step', yLabel, logY, logDecades,
    series: RUNS.map((s, k) => ({ name: s.label, color: s.color, dashed: !s.projection, x, y: series[k][key] })),
  });
  const svg = renderFigure(
    [
      panel('Loss', 'loss', 'loss', true),
      panel('Weight norm of scale-invariant weights', '||w||', 'weightNorm', false),
      panel('Effective step size ||dw|| / ||w||', 'effective step size', 'effectiveStepSize', true, 4),
    ],
    {
      title: 'Momentum inflates scale-invariant weights; the projection of SGDP/AdamP prevents it',
      subtitle: `toy problem, seed ${seed}, ${steps} steps, cosine lr schedule; dashed = baseline (SGD, AdamW), solid = projected (SGDP, AdamP)`,
    },
  );
  fs.writeFileSync(svgPath, svg);
  const settings = {
    steps, seed, weightDecay, sgd: TOY_DEFAULTS.sgd, adam: TOY_DEFAULTS.adam, schedule: 'cosine to 0',
  };
  fs.writeFileSync(jsonPath, JSON.stringify({
    settings: { ...settings, problem },
    runs,
    findings,
    series: RUNS.map((s, k) => ({
      label: s.label,
      loss: Array.from(series[k].loss),
      weightNorm: Array.from(series[k].weightNorm),
      effectiveStepSize: Array.from(series[k].effectiveStepSize),
      lr: Array.from(series[k].lr),
    })),
  }) + '\n');
  return { settings, runs, series, table, findings, svgPath, jsonPath };
}

function ratio(a: number, b: number): string {
  if (!(a > 0) || !(b > 0)) return 'n/a';
  const r = a / b;
  return r >= 1 ? `${r.toFixed(r >= 10 ? 0 : 1)}x larger` : `${(1 / r).toFixed(1 / r >= 10 ? 0 : 1)}x smaller`;
}

function compare(base: ToyRunSummary, proj: ToyRunSummary): string {
  return `${proj.label} vs ${base.label}: weight norm ${fmt(proj.weightNorm, 3)} vs ${fmt(base.weightNorm, 3)} ` +
    `(${base.label} grew ${(base.weightNorm / base.initialWeightNorm).toFixed(1)}x, ${proj.label} ${(proj.weightNorm / proj.initialWeightNorm).toFixed(1)}x); ` +
    `mean effective step size ${ratio(proj.meanEffectiveStepSize, base.meanEffectiveStepSize)}; ` +
    `final loss ${fmt(proj.finalLoss, 3)} vs ${fmt(base.finalLoss, 3)}.`;
}

interface RunContext {
  steps: number;
  seed: number;
  weightDecay: number;
  problem: ToyConfig;
  backend: 'auto' | 'js' | 'native';
  progress: ProgressStream | null;
}

async function runOne(spec: RunSpec, ctx: RunContext): Promise<{ summary: ToyRunSummary; series: ToySeries }> {
  // A fresh problem per run: the same targets, initial point and noise stream for every optimizer.
  const prob = new ToyProblem(ctx.seed, ctx.problem);
  const params = prob.makeParams();
  const baseLr = spec.family === 'sgd' ? TOY_DEFAULTS.sgd.lr : TOY_DEFAULTS.adam.lr;
  const config = { backend: ctx.backend, diagnostics: 'full' as const };
  const sgd = { lr: baseLr, momentum: TOY_DEFAULTS.sgd.momentum, weightDecay: ctx.weightDecay };
  const adam = { lr: baseLr, weightDecay: ctx.weightDecay };
  // The baselines are the registered SGD and AdamW (torch.optim's semantics), the paper's baselines.
  const opt = spec.family === 'sgd'
    ? spec.projection ? new SGDP(params, sgd, config) : new SGD(params, sgd, config)
    : spec.projection ? new AdamP(params, adam, config) : new AdamW(params, adam, config);
  const invariant = prob.tensors.map((t) => isScaleInvariant(t.spec.kind));
  const eligible = params.map((p) => p.shape.length > 1);
  const nEligible = eligible.filter(Boolean).length;
  const s: ToySeries = {
    loss: new Float64Array(ctx.steps),
    weightNorm: new Float64Array(ctx.steps),
    effectiveStepSize: new Float64Array(ctx.steps),
    lr: new Float64Array(ctx.steps),
  };
  const initialWeightNorm = invariantNorm(params, invariant);
  let channel = 0, layer = 0, essSum = 0;
  const bar = new ProgressBar(`${spec.label.padEnd(5)} (${spec.projection ? 'delta=0.1' : 'delta=0  '})`, ctx.steps, ctx.progress);
  try {
    for (let t = 1; t <= ctx.steps; t++) {
      const loss = prob.lossAndGrad(params);
      const lr = cosineLr(baseLr, t, ctx.steps);
      opt.paramGroups[0].lr = lr;
      opt.step();
      const info = opt.lastStepInfo;
      let nsq = 0, ess = 0, nInv = 0;
      info.forEach((pi: ParamStepInfo, k: number) => {
        if (eligible[k]) {
          if (pi.projection === 'channel') channel++;
          else if (pi.projection === 'layer') layer++;
        }
        if (invariant[k]) {
          nsq += (pi.weightNorm ?? 0) ** 2;
          ess += pi.effectiveStepSize ?? 0;
          nInv++;
        }
      });
      const i = t - 1;
      s.loss[i] = loss;
      s.lr[i] = lr;
      s.weightNorm[i] = Math.sqrt(nsq);
      s.effectiveStepSize[i] = nInv ? ess / nInv : NaN;
      essSum += s.effectiveStepSize[i];
      bar.update(t, `loss ${fmt(loss, 3)}  |w| ${fmt(s.weightNorm[i], 3)}`);
      if (t % 250 === 0) await new Promise((r) => setImmediate(r)); // keep signals and output flowing
    }
  } finally {
    opt.dispose();
  }
  const finalLoss = prob.loss(params);
  bar.finish(`final loss ${fmt(finalLoss, 3)}`);
  return {
    summary: {
      label: spec.label,
      family: spec.family,
      projection: spec.projection,
      backend: opt.backend,
      initialLoss: s.loss[0],
      finalLoss,
      weightNorm: s.weightNorm[ctx.steps - 1],
      initialWeightNorm,
      meanEffectiveStepSize: essSum / ctx.steps,
      projectionShare: { channel: channel / (ctx.steps * nEligible), layer: layer / (ctx.steps * nEligible) },
    },
    series: s,
  };
}

function invariantNorm(params: readonly Param[], invariant: readonly boolean[]): number {
  let s = 0;
  params.forEach((p, k) => {
    if (!invariant[k]) return;
    for (let i = 0; i < p.data.length; i++) s += p.data[i] * p.data[i];
  });
  return Math.sqrt(s);
}
