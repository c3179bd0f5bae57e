/**
 * The LR schedulers against PyTorch 1.13's torch.optim.lr_scheduler (test/fixtures/torch/
 * lr_scheduler.json): every value of every sequence (lr, and momentum where OneCycleLR cycles it),
 * the groups after construction, the state-dict round trips, on each optimizer the fixture's
 * optimizer maps to (SGD -> SGD, SGDP; AdamW -> AdamW, AdamP) and on the TF.js adapter's
 * optimizers (one group); then validation, state dicts, and the tfjs-layers callback with a real
 * model.fit.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import * as tfl from '@tensorflow/tfjs-layers';
import {
  AdamP, AdamW, CosineAnnealingLR, ExponentialLR, LambdaLR, LinearLR, MultiStepLR, OneCycleLR, SGD, SGDP, SequentialLR,
  StepLR, type LRScheduler, type Param, type SchedulableGroup, type SchedulableOptimizer,
} from '../lib/index';
import { AdamW as TfAdamW, SGD as TfSGD, schedulerCallback } from '../lib/tfjs';
import { LAMBDAS, loadSchedulerFixtures, type SchedulerCase, type SchedulerSpec } from './helpers/torch-fixtures';
import { rng } from './helpers/random';

const fx = loadSchedulerFixtures();
const REL = 1e-12;

// How far from PyTorch the values are, over every comparison against a fixture value.
const stats = { values: 0, exact: 0, maxRel: 0 };
afterAll(() => {
  console.log(`[schedulers] ${stats.values} fixture values compared: ${stats.exact} bit-exact, max relative difference ${stats.maxRel.toExponential(2)} (tolerance ${REL})`);
});

function close(actual: number, expected: number, what: string): void {
  stats.values++;
  if (Object.is(actual, expected)) {
    stats.exact++;
    return;
  }
  const rel = Math.abs(actual - expected) / Math.max(Math.abs(expected), Math.abs(actual));
  stats.maxRel = Math.max(stats.maxRel, rel);
  if (!(rel <= REL)) throw new Error(`${what}: got ${actual}, PyTorch ${expected} (relative difference ${rel})`);
}

function closeRow(actual: readonly number[], expected: readonly number[], what: string): void {
  expect(actual).toHaveLength(expected.length);
  actual.forEach((a, i) => close(a, expected[i], `${what}[${i}]`));
}

/** Deep comparison with numbers within REL. */
function closeDeep(actual: unknown, expected: unknown, what: string): void {
  if (typeof expected === 'number') {
    expect(typeof actual).toBe('number');
    close(actual as number, expected, what);
  } else if (Array.isArray(expected)) {
    expect(Array.isArray(actual)).toBe(true);
    expect((actual as unknown[]).length).toBe(expected.length);
    expected.forEach((e, i) => closeDeep((actual as unknown[])[i], e, `${what}[${i}]`));
  } else if (expected !== null && typeof expected === 'object') {
    expect(Object.keys(actual as object).sort()).toEqual(Object.keys(expected).sort());
    for (const [k, e] of Object.entries(expected)) closeDeep((actual as Record<string, unknown>)[k], e, `${what}.${k}`);
  } else {
    expect(actual).toEqual(expected);
  }
}

function errorOf(fn: () => unknown): { code?: string; message: string; name: string } {
  try {
    fn();
  } catch (e) {
    return { code: (e as { code?: string }).code, message: (e as Error).message, name: (e as Error).name };
  }
  throw new Error('expected a throw');
}

function expectInvalid(fn: () => unknown, ...parts: Array<string | RegExp>): void {
  const e = errorOf(fn);
  expect(e.name).toBe('AdampError');
  expect(e.code).toBe('ERR_ADAMP_INVALID_ARGUMENT');
  for (const p of parts) expect(e.message).toMatch(p);
}

// ---------------------------------------------------------------------------------------------
// Fixture cases -> adamp

const ARG_KEYS: Record<string, string> = {
  T_max: 'tMax', eta_min: 'etaMin', step_size: 'stepSize', gamma: 'gamma', milestones: 'milestones', start_factor: 'startFactor',
  end_factor: 'endFactor', total_iters: 'totalIters', lr_lambda: 'lrLambda', max_lr: 'maxLr', total_steps: 'totalSteps',
  epochs: 'epochs', steps_per_epoch: 'stepsPerEpoch', pct_start: 'pctStart', anneal_strategy: 'annealStrategy',
  cycle_momentum: 'cycleMomentum', base_momentum: 'baseMomentum', max_momentum: 'maxMomentum', div_factor: 'divFactor',
  final_div_factor: 'finalDivFactor', three_phase: 'threePhase', schedulers: 'schedulers',
};

/** A fixture's scheduler on `opt`; `one` projects per-group lists onto group 0 (the TF.js adapter's single group). */
function build(spec: SchedulerSpec, opt: SchedulableOptimizer, one = false): LRScheduler {
  const args: Record<string, unknown> = {};
  const PER_GROUP = ['max_lr', 'base_momentum', 'max_momentum'];
  const project = (k: string, v: unknown) => (one && PER_GROUP.includes(k) && Array.isArray(v) ? v[0] : v);
  for (const [k, v] of Object.entries(spec.args)) {
    const key = ARG_KEYS[k];
    if (key === undefined) throw new Error(`fixture argument ${k} has no mapping`);
    if (k === 'lr_lambda') {
      const lam = (name: unknown) => LAMBDAS[name as string];
      args.lrLambda = Array.isArray(v) ? (one ? lam(v[0]) : v.map(lam)) : lam(v);
    } else if (k === 'milestones' && spec.type === 'MultiStepLR') {
      args.milestones = v;
    } else if (k === 'schedulers') {
      args.schedulers = (v as SchedulerSpec[]).map((s) => build(s, opt, one));
    } else {
      args[key] = project(k, v);
    }
  }
  switch (spec.type) {
    case 'CosineAnnealingLR': return new CosineAnnealingLR(opt, args as never);
    case 'StepLR': return new StepLR(opt, args as never);
    case 'MultiStepLR': return new MultiStepLR(opt, args as never);
    case 'ExponentialLR': return new ExponentialLR(opt, args as never);
    case 'LinearLR': return new LinearLR(opt, args as never);
    case 'LambdaLR': return new LambdaLR(opt, args as never);
    case 'OneCycleLR': return new OneCycleLR(opt, args as never);
    case 'SequentialLR': return new SequentialLR(opt, args as never);
  }
}

type Kind = 'SGD' | 'SGDP' | 'AdamW' | 'AdamP';
const MAPS: Record<'SGD' | 'AdamW', Kind[]> = { SGD: ['SGD', 'SGDP'], AdamW: ['AdamW', 'AdamP'] };

/** The fixture's optimizer as one of ours: its groups (one 3x4 param each) with the case's lrs and defaults. */
function makeOptimizer(c: SchedulerCase, kind: Kind, seed = 1) {
  const r = rng(seed);
  const params: Param[] = c.optimizer.groups.map((_, i) => ({
    name: `w${i}`, shape: [3, 4], data: Float32Array.from({ length: 12 }, () => r() - 0.5), grad: null,
  }));
  const groups = c.optimizer.groups.map((g, i) => ({ params: [params[i]], lr: g.lr as number }));
  const d = c.optimizer.defaults as { momentum?: number; betas?: [number, number] };
  const config = { backend: 'js' as const };
  const opt = kind === 'SGD' ? new SGD(groups, { lr: 0.1, momentum: d.momentum }, config)
    : kind === 'SGDP' ? new SGDP(groups, { lr: 0.1, momentum: d.momentum }, config)
      : kind === 'AdamW' ? new AdamW(groups, { betas: d.betas }, config)
        : new AdamP(groups, { betas: d.betas }, config);
  const step = () => {
    for (const p of params) p.grad = Float32Array.from({ length: 12 }, () => r() - 0.5);
    opt.step();
  };
  return { opt, params, step, groups: opt.paramGroups as unknown as SchedulableGroup[] };
}

const GROUP_KEYS: Record<string, keyof SchedulableGroup> = {
  initial_lr: 'initialLr', max_lr: 'maxLr', min_lr: 'minLr', max_momentum: 'maxMomentum', base_momentum: 'baseMomentum',
};

/** Our group against PyTorch's param_group (the keys a scheduler reads or writes). */
function checkGroup(g: SchedulableGroup, torch: Record<string, unknown>, what: string): void {
  close(g.lr, torch.lr as number, `${what}.lr`);
  if ('momentum' in torch) close(g.momentum!, torch.momentum as number, `${what}.momentum`);
  if ('betas' in torch) closeRow(g.betas!, torch.betas as number[], `${what}.betas`);
  for (const [k, ours] of Object.entries(GROUP_KEYS)) {
    if (k in torch) close(g[ours] as number, torch[k] as number, `${what}.${ours}`);
    else expect(g[ours]).toBeUndefined();
    // scheduler values never show up as options of the optimizer
    expect(Object.keys(g)).not.toContain(ours);
  }
}

/** PyTorch's param_group values written back into ours (what the fixtures' resume does). */
function restoreGroups(groups: readonly SchedulableGroup[], torch: Array<Record<string, unknown>>): void {
  groups.forEach((g, i) => {
    const t = torch[i];
    g.lr = t.lr as number;
    if ('momentum' in t) g.momentum = t.momentum as number;
    if ('betas' in t) g.betas = (t.betas as number[]).slice();
    for (const [k, ours] of Object.entries(GROUP_KEYS)) if (k in t) (g as unknown as Record<string, number>)[ours] = t[k] as number;
  });
}

function momentumOf(g: SchedulableGroup, key: SchedulerCase['momentumKey']): number {
  return key === 'momentum' ? g.momentum! : g.betas![0];
}

/** Our state dict with PyTorch's keys (for comparing with the fixture's). */
function toTorch(sd: Record<string, unknown>): Record<string, unknown> {
  const KEYS: Record<string, string> = {
    baseLrs: 'base_lrs', lastEpoch: 'last_epoch', stepCount: '_step_count', lastLr: '_last_lr', tMax: 'T_max', etaMin: 'eta_min',
    stepSize: 'step_size', gamma: 'gamma', startFactor: 'start_factor', endFactor: 'end_factor', totalIters: 'total_iters',
    lrLambdas: 'lr_lambdas', totalSteps: 'total_steps', cycleMomentum: 'cycle_momentum', useBeta1: 'use_beta1',
  };
  const TORCH_VALUE: Record<string, string> = {
    initialLr: 'initial_lr', maxLr: 'max_lr', minLr: 'min_lr', maxMomentum: 'max_momentum', baseMomentum: 'base_momentum',
  };
  const out: Record<string, unknown> = {};
  const sequential = 'schedulers' in sd;
  for (const [k, v] of Object.entries(sd)) {
    if (sequential) {
      if (k === 'schedulers') out._schedulers = (v as Array<Record<string, unknown>>).map(toTorch);
      else if (k === 'milestones') out._milestones = v;
      else out[KEYS[k]] = v;
    } else if (k === 'milestones') {
      const counter: Record<string, number> = {};
      for (const m of v as number[]) counter[m] = (counter[m] ?? 0) + 1;
      out.milestones = counter;
    } else if (k === 'schedulePhases') {
      out._schedule_phases = (v as Array<Record<string, unknown>>).map((p) => ({
        end_step: p.endStep, start_lr: TORCH_VALUE[p.startLr as string], end_lr: TORCH_VALUE[p.endLr as string],
        start_momentum: TORCH_VALUE[p.startMomentum as string], end_momentum: TORCH_VALUE[p.endMomentum as string],
      }));
    } else if (k === 'annealStrategy') {
      out.anneal_func = `_annealing_${v}`;
    } else {
      expect(KEYS[k]).toBeDefined();
      out[KEYS[k]] = v;
    }
  }
  if (!sequential) Object.assign(out, { verbose: false, _get_lr_called_within_step: false });
  return out;
}

describe.each(fx.cases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
  const kinds = MAPS[c.optimizer.name];

  test.each(kinds)('every value on %s, and the state at the resume point', (kind) => {
    const { opt, step, groups } = makeOptimizer(c, kind);
    const sched = build(c.scheduler, opt);
    c.groupsAfterInit.forEach((t, i) => checkGroup(groups[i], t, `groupsAfterInit[${i}]`));
    const check = (k: number) => {
      closeRow(sched.getLastLr(), c.lr[k], `lr row ${k}`);
      expect(groups.map((g) => g.lr)).toEqual(sched.getLastLr());
      if (c.momentum) closeRow(groups.map((g) => momentumOf(g, c.momentumKey)), c.momentum[k], `momentum row ${k}`);
      if (c.momentumKey === 'betas[0]') for (const g of groups) expect(g.betas![1]).toBe(0.999);
    };
    check(0);
    expect(sched.lastEpoch).toBe(0);
    for (let k = 1; k <= c.steps; k++) {
      step();
      sched.step();
      check(k);
      if (k === c.resume.atStep) {
        expect(sched.lastEpoch).toBe(c.resume.lastEpoch);
        const sd = sched.stateDict();
        expect(JSON.parse(JSON.stringify(sd))).toEqual(sd); // plain JSON
        closeDeep(toTorch(sd), c.resume.stateDict, 'stateDict');
        c.resume.optimizerGroups.forEach((t, i) => checkGroup(groups[i], t, `optimizerGroups[${i}]`));
      }
    }
    expect(sched.lastEpoch).toBe(c.lastEpoch);
    if (c.raisesOnStepCall !== undefined) {
      expect(c.raisesOnStepCall).toBe(c.steps + 1);
      const before = { lr: sched.getLastLr(), sd: sched.stateDict(), groups: opt.paramGroups.map((g) => ({ ...g, params: undefined })) };
      expectInvalid(() => sched.step(), 'OneCycleLR', `Tried to step ${c.steps + 2} times`, `total steps is ${c.steps}`);
      expect(sched.getLastLr()).toEqual(before.lr);
      expect(sched.stateDict()).toEqual(before.sd);
      expect(opt.paramGroups.map((g) => ({ ...g, params: undefined }))).toEqual(before.groups);
    }
  });

  /** Rows atStep+1.. of a fresh optimizer + scheduler with `sd` loaded (and the groups restored when `groups`). */
  function resumed(kind: Kind, sd: Record<string, unknown>, groups: boolean): number[][] {
    const { opt, step, groups: g } = makeOptimizer(c, kind, 7);
    const sched = build(c.scheduler, opt);
    sched.loadStateDict(sd);
    if (groups) restoreGroups(g, c.resume.optimizerGroups);
    expect(sched.lastEpoch).toBe(c.resume.lastEpoch);
    const rows: number[][] = [];
    for (let k = c.resume.atStep + 1; k <= c.steps; k++) {
      step();
      sched.step();
      rows.push(sched.getLastLr());
    }
    return rows;
  }

  test.each(kinds)('resumes from PyTorch\'s state dict and from its own on %s', (kind) => {
    const expected = c.lr.slice(c.resume.atStep + 1);
    // PyTorch's state_dict (snake_case JSON) + the optimizer's groups: continues exactly
    resumed(kind, c.resume.stateDict, true).forEach((row, j) => closeRow(row, expected[j], `PyTorch state, row ${c.resume.atStep + 1 + j}`));
    // our own state dict, through JSON
    const { opt, step } = makeOptimizer(c, kind);
    const sched = build(c.scheduler, opt);
    for (let k = 1; k <= c.resume.atStep; k++) {
      step();
      sched.step();
    }
    const ours = JSON.parse(JSON.stringify(sched.stateDict()));
    resumed(kind, ours, true).forEach((row, j) => closeRow(row, expected[j], `own state, row ${c.resume.atStep + 1 + j}`));
    // the scheduler's state alone (groups as freshly built): PyTorch's quirk, reproduced
    const alone = resumed(kind, c.resume.stateDict, false);
    const same = alone.every((row, j) => row.every((x, i) => Math.abs(x - expected[j][i]) <= REL * Math.abs(expected[j][i])));
    expect(same).toBe(c.resume.schedulerOnlyContinues);
  });

  test('on the TF.js adapter (one group: the case projected onto group 0)', () => {
    const lr = c.optimizer.groups[0].lr as number;
    const d = c.optimizer.defaults as { momentum?: number; betas?: [number, number] };
    const opt = c.optimizer.name === 'SGD' ? new TfSGD({ lr, momentum: d.momentum, backend: 'js' }) : new TfAdamW({ lr, betas: d.betas, backend: 'js' });
    const sched = build(c.scheduler, opt, true);
    const hp = opt.hyperparameters as unknown as SchedulableGroup;
    for (let k = 0; k <= c.steps; k++) {
      if (k > 0) sched.step();
      close(sched.getLastLr()[0], c.lr[k][0], `lr row ${k}`);
      expect(opt.learningRate).toBe(sched.getLastLr()[0]);
      if (c.momentum) close(momentumOf(hp, c.momentumKey), c.momentum[k][0], `momentum row ${k}`);
    }
    // the scheduler's values stay out of the adapter's config
    expect(Object.keys(opt.getConfig())).not.toContain('initialLr');
    opt.dispose();
  });
});

test('every fixture case ran', () => {
  expect(fx.cases).toHaveLength(31);
  expect(new Set(fx.cases.map((c) => c.scheduler.type))).toEqual(new Set([
    'CosineAnnealingLR', 'StepLR', 'MultiStepLR', 'ExponentialLR', 'LinearLR', 'LambdaLR', 'OneCycleLR', 'SequentialLR',
  ]));
});

// ---------------------------------------------------------------------------------------------

function sgd(lrs = [0.1, 0.02]) {
  const params: Param[] = lrs.map((_, i) => ({ name: `w${i}`, shape: [2], data: new Float32Array(2), grad: new Float32Array([0.1, -0.2]) }));
  return new SGD(lrs.map((lr, i) => ({ params: [params[i]], lr })), { lr: 0.1, momentum: 0.9 }, { backend: 'js' });
}

function adamw() {
  return new AdamW([{ params: [{ shape: [2], data: new Float32Array(2), grad: null }] }], { lr: 1e-3 }, { backend: 'js' });
}

/** Every own property of every group, with descriptors (to see that nothing changed). */
function snapshot(opt: { paramGroups: readonly object[] }) {
  return opt.paramGroups.map((g) => {
    const d = Object.getOwnPropertyDescriptors(g) as Record<string, PropertyDescriptor>;
    return Object.fromEntries(Object.entries(d).map(([k, v]) => [k, k === 'params' ? null : JSON.stringify(v)]));
  });
}

describe('options are checked before anything changes', () => {
  const cases: Array<[string, (o: SGD) => unknown, Array<string | RegExp>]> = [
    ['StepLR stepSize 0', (o) => new StepLR(o, { stepSize: 0 }), ['StepLR: options.stepSize', 'integer >= 1']],
    ['StepLR stepSize 1.5', (o) => new StepLR(o, { stepSize: 1.5 }), ['options.stepSize']],
    ['StepLR without stepSize', (o) => new StepLR(o, {} as never), ['options.stepSize', 'undefined']],
    ['StepLR gamma -1', (o) => new StepLR(o, { stepSize: 2, gamma: -1 }), ['options.gamma', '> 0']],
    ['StepLR gamma NaN', (o) => new StepLR(o, { stepSize: 2, gamma: NaN }), ['options.gamma', 'finite']],
    ['StepLR step_size (PyTorch spelling)', (o) => new StepLR(o, { step_size: 2 } as never), ['options.step_size is not an option', "did you mean 'stepSize'"]],
    ['MultiStepLR milestones not an array', (o) => new MultiStepLR(o, { milestones: 5 } as never), ['options.milestones']],
    ['MultiStepLR milestone -1', (o) => new MultiStepLR(o, { milestones: [3, -1] }), ['options.milestones[1]']],
    ['ExponentialLR without gamma', (o) => new ExponentialLR(o, {} as never), ['options.gamma']],
    ['LinearLR startFactor 0', (o) => new LinearLR(o, { startFactor: 0 }), ['options.startFactor', '(0, 1]']],
    ['LinearLR startFactor 1.5', (o) => new LinearLR(o, { startFactor: 1.5 }), ['options.startFactor']],
    ['LinearLR endFactor -0.1', (o) => new LinearLR(o, { endFactor: -0.1 }), ['options.endFactor', '[0, 1]']],
    ['LinearLR totalIters 0', (o) => new LinearLR(o, { totalIters: 0 }), ['options.totalIters']],
    ['CosineAnnealingLR T_max', (o) => new CosineAnnealingLR(o, { T_max: 10 } as never), ["did you mean 'tMax'"]],
    ['CosineAnnealingLR tMax 0', (o) => new CosineAnnealingLR(o, { tMax: 0 }), ['options.tMax']],
    ['CosineAnnealingLR etaMin -1', (o) => new CosineAnnealingLR(o, { tMax: 5, etaMin: -1 }), ['options.etaMin']],
    ['LambdaLR lrLambda not a function', (o) => new LambdaLR(o, { lrLambda: 3 } as never), ['options.lrLambda must be a function']],
    ['LambdaLR one lambda for two groups', (o) => new LambdaLR(o, { lrLambda: [() => 1] }), ['1 functions', '2 param groups']],
    ['LambdaLR lambda returning NaN', (o) => new LambdaLR(o, { lrLambda: () => NaN }), ['the lr of paramGroups[0] at step 0 would be NaN']],
    ['LambdaLR lambda returning a string', (o) => new LambdaLR(o, { lrLambda: () => 'x' as never }), ['returned "x"']],
    ['OneCycleLR without maxLr', (o) => new OneCycleLR(o, { totalSteps: 10 } as never), ['options.maxLr']],
    ['OneCycleLR maxLr for 3 groups', (o) => new OneCycleLR(o, { maxLr: [1, 2, 3], totalSteps: 10 }), ['options.maxLr has 3 values', '2 param groups']],
    ['OneCycleLR totalSteps 0', (o) => new OneCycleLR(o, { maxLr: 1, totalSteps: 0 }), ['options.totalSteps']],
    ['OneCycleLR no length', (o) => new OneCycleLR(o, { maxLr: 1 }), ['options.totalSteps is required']],
    ['OneCycleLR epochs only', (o) => new OneCycleLR(o, { maxLr: 1, epochs: 3 }), ['options.stepsPerEpoch']],
    ['OneCycleLR both lengths', (o) => new OneCycleLR(o, { maxLr: 1, totalSteps: 9, epochs: 3, stepsPerEpoch: 3 }), ['not both']],
    ['OneCycleLR pctStart 1.5', (o) => new OneCycleLR(o, { maxLr: 1, totalSteps: 9, pctStart: 1.5 }), ['options.pctStart']],
    ['OneCycleLR annealStrategy exp', (o) => new OneCycleLR(o, { maxLr: 1, totalSteps: 9, annealStrategy: 'exp' as never }), ['options.annealStrategy']],
    ['OneCycleLR divFactor 0', (o) => new OneCycleLR(o, { maxLr: 1, totalSteps: 9, divFactor: 0 }), ['options.divFactor']],
    ['OneCycleLR maxMomentum -1', (o) => new OneCycleLR(o, { maxLr: 1, totalSteps: 9, maxMomentum: -1 }), ['options.maxMomentum']],
    // pct_start * total_steps = 1: phase 1 has no length; PyTorch raises ZeroDivisionError at construction
    ['OneCycleLR with an empty first phase', (o) => new OneCycleLR(o, { maxLr: 1, totalSteps: 10, pctStart: 0.1 }), ['at step 0 would be NaN']],
    ['lastEpoch -2', (o) => new StepLR(o, { stepSize: 2, lastEpoch: -2 }), ['options.lastEpoch', 'integer >= -1']],
    ['resuming without initialLr', (o) => new StepLR(o, { stepSize: 2, lastEpoch: 5 }), ['paramGroups[0].initialLr is not set', 'initial_lr']],
    ['SequentialLR milestones count', (o) => new SequentialLR(o, { schedulers: [new StepLR(o, { stepSize: 2 }), new StepLR(o, { stepSize: 3 })], milestones: [] }), ['0 milestones for 2 schedulers']],
    ['SequentialLR milestones not increasing', (o) => new SequentialLR(o, {
      schedulers: [new StepLR(o, { stepSize: 2 }), new StepLR(o, { stepSize: 3 }), new StepLR(o, { stepSize: 3 })], milestones: [5, 5],
    }), ['must be increasing']],
    ['SequentialLR of another optimizer', (o) => new SequentialLR(o, { schedulers: [new StepLR(sgd(), { stepSize: 2 })], milestones: [] }), ['another optimizer']],
    ['SequentialLR of a non-scheduler', (o) => new SequentialLR(o, { schedulers: [{ step() {} } as never], milestones: [] }), ['options.schedulers[0] must be a scheduler']],
  ];
  test.each(cases)('%s', (_n, make, parts) => {
    const opt = sgd();
    const unchanged = snapshot(opt);
    expectInvalid(() => make(opt), ...parts);
    // (SequentialLR's schedulers are built first, and change the groups: see the next test)
    if (!_n.startsWith('SequentialLR')) expect(snapshot(opt)).toEqual(unchanged);
  });

  test('SequentialLR refuses before changing the groups its schedulers left', () => {
    const opt = sgd();
    const a = new LinearLR(opt, { startFactor: 0.5 });
    const b = new StepLR(opt, { stepSize: 3 });
    const left = snapshot(opt);
    const aState = a.stateDict();
    expectInvalid(() => new SequentialLR(opt, { schedulers: [a, b], milestones: [0] }), 'options.milestones[0]');
    expect(snapshot(opt)).toEqual(left);
    expect(a.stateDict()).toEqual(aState);
  });

  test('an optimizer is required', () => {
    expectInvalid(() => new StepLR({} as never, { stepSize: 1 }), 'StepLR: optimizer must be an optimizer');
    expectInvalid(() => new StepLR({ paramGroups: [] }, { stepSize: 1 }), 'no param groups');
    expectInvalid(() => new StepLR({ paramGroups: [{ lr: 'x' as never }] }, { stepSize: 1 }), 'paramGroups[0].lr must be a finite number');
  });

  test('OneCycleLR needs momentum to cycle it, and betas[0] below 1', () => {
    const plain = { paramGroups: [{ lr: 0.1 }] };
    expectInvalid(() => new OneCycleLR(plain, { maxLr: 1, totalSteps: 5 }), 'cycleMomentum needs an optimizer with momentum', 'cycleMomentum: false');
    expect(Object.getOwnPropertyNames(plain.paramGroups[0])).toEqual(['lr']);
    new OneCycleLR(plain, { maxLr: 1, totalSteps: 5, cycleMomentum: false });
    const opt = adamw();
    const unchanged = snapshot(opt);
    expectInvalid(() => new OneCycleLR(opt, { maxLr: 1e-2, totalSteps: 5, maxMomentum: 1 }), 'options.maxMomentum', 'betas[0]');
    expect(snapshot(opt)).toEqual(unchanged);
  });
});

describe('PyTorch behaviour', () => {
  test('initialLr is kept per group, out of the optimizer\'s options and state dict', () => {
    const opt = sgd();
    const a = new LinearLR(opt, { startFactor: 0.5, totalIters: 4 });
    expect((opt.paramGroups as SchedulableGroup[]).map((g) => g.initialLr)).toEqual([0.1, 0.02]);
    expect(opt.paramGroups.map((g) => g.lr)).toEqual([0.05, 0.01]);
    expect(Object.keys(opt.paramGroups[0])).not.toContain('initialLr');
    expect(opt.stateDict().paramGroups[0]).not.toHaveProperty('initialLr');
    // a second scheduler on the same optimizer starts from the initial lr, not the current one (setdefault)
    const b = new StepLR(opt, { stepSize: 2 });
    expect(b.baseLrs).toEqual([0.1, 0.02]);
    expect(a.baseLrs).toEqual([0.1, 0.02]);
    opt.step(); // the optimizer still accepts its groups
  });

  test('resuming with lastEpoch: an initialLr set by hand is taken over', () => {
    const opt = sgd([0.025, 0.005]);
    const groups = opt.paramGroups as SchedulableGroup[];
    groups[0].initialLr = 0.1; // as PyTorch's param_groups[0]['initial_lr'] = 0.1
    groups[1].initialLr = 0.02;
    expectInvalid(() => opt.step(), 'initialLr is not an option'); // a plain key is not an SGD option...
    const s = new StepLR(opt, { stepSize: 10, lastEpoch: 19 });
    opt.step(); // ...the scheduler made it non-enumerable
    expect(Object.keys(opt.paramGroups[0])).not.toContain('initialLr');
    expect(s.lastEpoch).toBe(20);
    expect(s.baseLrs).toEqual([0.1, 0.02]);
    expect(s.getLastLr()).toEqual([0.025 * 0.1, 0.005 * 0.1]); // epoch 20 is a decay step (chainable form)
  });

  test('CosineAnnealingLR resumed with lastEpoch takes its closed form at the first step', () => {
    const opt = sgd();
    const first = new CosineAnnealingLR(opt, { tMax: 10, etaMin: 0.001 });
    for (let k = 0; k < 4; k++) first.step();
    const resumed = new CosineAnnealingLR(opt, { tMax: 10, etaMin: 0.001, lastEpoch: 4 });
    const closed = (b: number, e: number) => 0.001 + ((b - 0.001) * (1 + Math.cos((e * Math.PI) / 10))) / 2;
    expect(resumed.getLastLr()).toEqual([closed(0.1, 5), closed(0.02, 5)]);
  });

  test('OneCycleLR\'s last step extrapolates (linear: a negative lr, which the optimizer then refuses)', () => {
    const opt = sgd();
    const s = new OneCycleLR(opt, { maxLr: 0.2, totalSteps: 6, annealStrategy: 'linear' });
    for (let k = 0; k < 6; k++) {
      opt.step();
      s.step();
    }
    expect(s.getLastLr()[0]).toBeLessThan(0);
    expectInvalid(() => opt.step(), 'lr', '>= 0');
    expectInvalid(() => s.step(), 'Tried to step 8 times');
    expect(s.lastEpoch).toBe(6);
  });

  test('OneCycleLR: epochs * stepsPerEpoch is totalSteps', () => {
    const a = { paramGroups: [{ lr: 0.1, momentum: 0.9 }] };
    const b = { paramGroups: [{ lr: 0.1, momentum: 0.9 }] };
    const sa = new OneCycleLR(a, { maxLr: 0.5, totalSteps: 100 });
    const sb = new OneCycleLR(b, { maxLr: 0.5, epochs: 4, stepsPerEpoch: 25 });
    for (let k = 0; k < 100; k++) {
      sa.step();
      sb.step();
      expect(b.paramGroups).toEqual(a.paramGroups);
    }
    expect(sb.stateDict()).toEqual(sa.stateDict());
  });

  test('a group added after the scheduler was built is refused at its step', () => {
    const opt = sgd();
    const s = new StepLR(opt, { stepSize: 2 });
    opt.addParamGroup({ params: [{ shape: [1], data: new Float32Array(1), grad: null }], lr: 0.3 });
    expectInvalid(() => s.step(), '3 param groups', 'built for 2');
    expect(s.lastEpoch).toBe(0);
  });

  test('works on any object with paramGroups', () => {
    const plain = { paramGroups: [{ lr: 1 }, { lr: 2 }] };
    const s = new ExponentialLR(plain, { gamma: 0.5 });
    s.step();
    s.step();
    expect(plain.paramGroups.map((g) => g.lr)).toEqual([0.25, 0.5]);
    expect(s.getLastLr()).toEqual([0.25, 0.5]);
  });
});

describe('state dicts', () => {
  test('are plain JSON; loading checks the whole dict first', () => {
    const opt = sgd();
    const s = new MultiStepLR(opt, { milestones: [4, 2, 4], gamma: 0.5 });
    for (let k = 0; k < 3; k++) s.step();
    const sd = s.stateDict();
    expect(sd).toEqual({ milestones: [2, 4, 4], gamma: 0.5, baseLrs: [0.1, 0.02], lastEpoch: 3, stepCount: 4, lastLr: [0.05, 0.01] });
    expect(JSON.parse(JSON.stringify(sd))).toEqual(sd);
    const t = new MultiStepLR(sgd(), { milestones: [1], gamma: 0.9 });
    const before = t.stateDict();
    expectInvalid(() => t.loadStateDict({ ...sd, baseLrs: [0.1] }), 'stateDict.baseLrs must be an array of 2 numbers');
    expectInvalid(() => t.loadStateDict({ ...sd, gamma: 'x' }), 'stateDict.gamma');
    expectInvalid(() => t.loadStateDict({ ...sd, tMax: 3 }), 'stateDict.tMax is not a key', "another scheduler's state");
    expectInvalid(() => t.loadStateDict({ ...sd, base_lrs: [0.1, 0.02] }), "both 'baseLrs' and 'base_lrs'");
    const { lastLr: _l, ...partial } = sd;
    expectInvalid(() => t.loadStateDict(partial), 'stateDict.lastLr is missing');
    expect(t.stateDict()).toEqual(before);
    t.loadStateDict(sd);
    expect(t.stateDict()).toEqual(sd);
    // PyTorch's spelling (milestones as a Counter)
    const u = new MultiStepLR(sgd(), { milestones: [1] });
    u.loadStateDict({ milestones: { 2: 1, 4: 2 }, gamma: 0.5, base_lrs: [0.1, 0.02], last_epoch: 3, _step_count: 4, _last_lr: [0.05, 0.01], verbose: false, _get_lr_called_within_step: false });
    expect(u.stateDict()).toEqual(sd);
  });

  test('LambdaLR saves no functions, only a function\'s own properties', () => {
    const opt = sgd();
    const warm = Object.assign((e: number) => Math.min(1, (e + 1) / warm.steps), { steps: 4 });
    const s = new LambdaLR(opt, { lrLambda: [warm, (e: number) => 0.9 ** e] });
    s.step();
    const sd = s.stateDict();
    expect(sd.lrLambdas).toEqual([{ steps: 4 }, null]);
    const warm2 = Object.assign((e: number) => Math.min(1, (e + 1) / warm2.steps), { steps: 100 });
    const t = new LambdaLR(sgd(), { lrLambda: [warm2, (e: number) => 0.9 ** e] });
    t.loadStateDict(JSON.parse(JSON.stringify(sd)));
    expect(warm2.steps).toBe(4);
  });

  test('SequentialLR checks every sub-state before loading any', () => {
    const make = () => {
      const opt = sgd();
      const a = new LinearLR(opt, { startFactor: 0.1, totalIters: 3 });
      const b = new ExponentialLR(opt, { gamma: 0.9 });
      return { a, b, s: new SequentialLR(opt, { schedulers: [a, b], milestones: [3] }) };
    };
    const x = make();
    for (let k = 0; k < 5; k++) x.s.step();
    const sd = x.s.stateDict();
    const y = make();
    const before = y.s.stateDict();
    const bad = JSON.parse(JSON.stringify(sd));
    bad.schedulers[1].gamma = -1;
    expectInvalid(() => y.s.loadStateDict(bad), 'stateDict.schedulers[1].gamma');
    expect(y.s.stateDict()).toEqual(before);
    y.s.loadStateDict(JSON.parse(JSON.stringify(sd)));
    expect(y.s.stateDict()).toEqual(sd);
  });
});

// ---------------------------------------------------------------------------------------------

describe('tfjs-layers callback', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
    const warn = jest.spyOn(console, 'warn').mockImplementation(() => undefined);
    tf.tensor([0]).dispose();
    warn.mockRestore();
  });

  function data() {
    const r = rng(3);
    const x = Float32Array.from({ length: 8 * 2 }, () => r() - 0.5);
    const y = Float32Array.from({ length: 8 }, (_, i) => x[2 * i] - 2 * x[2 * i + 1]);
    return { xs: tf.tensor2d(x, [8, 2]), ys: tf.tensor2d(y, [8, 1]) };
  }

  /** A dense model trained by `optimizer`; the lr (and momentum) the optimizer had at each of its steps. */
  async function fit(optimizer: InstanceType<typeof TfSGD>, callback: object, epochs: number) {
    const model = tfl.sequential();
    model.add(tfl.layers.dense({ units: 1, inputShape: [2], kernelInitializer: 'ones' }));
    model.compile({ optimizer, loss: 'meanSquaredError' });
    const seen: Array<[number, number]> = [];
    const apply = optimizer.applyGradients.bind(optimizer);
    optimizer.applyGradients = (vg) => {
      seen.push([optimizer.learningRate, (optimizer.hyperparameters as { momentum: number }).momentum]);
      apply(vg);
    };
    const { xs, ys } = data();
    const kernel0 = (model.getWeights()[0].dataSync() as Float32Array).slice();
    await model.fit(xs, ys, { epochs, batchSize: 2, shuffle: false, verbose: 0, callbacks: [callback] });
    expect(model.getWeights()[0].dataSync()).not.toEqual(kernel0); // it trained
    tf.dispose([xs, ys]);
    model.dispose();
    return seen;
  }

  test('every batch: OneCycleLR over 3 epochs of 4 batches', async () => {
    const optimizer = new TfSGD({ lr: 0.1, momentum: 0.9, backend: 'js' });
    const scheduler = new OneCycleLR(optimizer, { maxLr: 0.5, totalSteps: 12 });
    const seen = await fit(optimizer, schedulerCallback(scheduler, { every: 'batch' }), 3);
    // the same schedule on a plain group
    const twin = { paramGroups: [{ lr: 0.1, momentum: 0.9 }] };
    const ref = new OneCycleLR(twin, { maxLr: 0.5, totalSteps: 12 });
    const expected: Array<[number, number]> = [];
    for (let k = 0; k < 12; k++) {
      expected.push([twin.paramGroups[0].lr, twin.paramGroups[0].momentum]);
      ref.step();
    }
    expect(seen).toEqual(expected);
    expect(scheduler.lastEpoch).toBe(12);
    expect(optimizer.learningRate).toBe(twin.paramGroups[0].lr);
  });

  test('every epoch: StepLR over 4 epochs', async () => {
    const optimizer = new TfSGD({ lr: 0.1, backend: 'js' });
    const scheduler = new StepLR(optimizer, { stepSize: 2, gamma: 0.5 });
    const seen = await fit(optimizer, schedulerCallback(scheduler), 4);
    expect(seen.map(([lr]) => lr)).toEqual([...Array(8).fill(0.1), ...Array(8).fill(0.05)]);
    expect(scheduler.lastEpoch).toBe(4);
    expect(optimizer.learningRate).toBe(0.025);
  });

  test('bad arguments', () => {
    expectInvalid(() => schedulerCallback({} as never), 'scheduler must be a scheduler');
    const s = new StepLR({ paramGroups: [{ lr: 1 }] }, { stepSize: 1 });
    expectInvalid(() => schedulerCallback(s, { every: 'step' as never }), "options.every must be 'batch' or 'epoch'");
    expectInvalid(() => schedulerCallback(s, { each: 'batch' } as never), 'options.each is not an option');
  });
});
