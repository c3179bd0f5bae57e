/**
 * The distributed layer on one machine (docs/distributed.md): ranks are worker threads joined by
 * the in-process collective. Sharded steps of AdamP, SGDP, AdamW and SGD, both partitionings, 1-4
 * ranks, random models and hyperparameters: params, state and lastStepInfo byte-identical to the
 * single-process optimizer on the same backend after every step. Data-parallel gradients equal to
 * the rank-ordered mean. Disagreeing ranks, dead and stalled ranks, checkpoints through save,
 * merge and reshard. The same flows run over MPI in test/distributed-mpi.test.ts.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { availableBackends } from './helpers/backends';
import { runGroup, values, type Task } from './helpers/distributed/group';
import { partition, SoloCollective, ShardedOptimizer, averageGradients, rankOrderMean } from '../lib/distributed';
import type { Collective } from '../lib/distributed';
import { AdamP, SGD } from '../lib/index';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const scenario = require('./helpers/distributed/scenario');

const BACKENDS = availableBackends().filter((b) => b === 'js' || b === 'native');
const OPTIMIZERS = ['AdamP', 'SGDP', 'AdamW', 'SGD'];

describe('partition', () => {
  const units = [[0, 10, 20, 30], [0, 5], [0], [0, 100, 200, 300, 400, 500], [0, 7, 14]];
  test.each([1, 2, 3, 4, 7, 16])('%i ranks: contiguous, at unit boundaries, every tensor covered once, both modes', (size) => {
    for (const mode of ['slices', 'tensors'] as const) {
      const plan = partition(units, size, mode);
      expect(plan.cuts).toHaveLength(size + 1);
      expect(plan.cuts[0]).toBe(0);
      expect(plan.cuts[size]).toBe(plan.total);
      for (let r = 0; r < size; r++) expect(plan.cuts[r + 1]).toBeGreaterThanOrEqual(plan.cuts[r]);
      for (const t of plan.tensors) {
        let at = 0;
        for (const pc of t.pieces) {
          expect(pc.begin).toBe(at);
          expect(t.units[pc.u0]).toBe(pc.begin);
          expect(t.units[pc.u1]).toBe(pc.end);
          at = pc.end;
        }
        expect(at).toBe(t.numel);
        if (mode === 'tensors') expect(t.pieces.length).toBeLessThanOrEqual(1);
      }
      expect(partition(units, size, mode).digest).toBe(plan.digest);
    }
  });

  test('slices balance: every rank within one unit of total / size', () => {
    const big = [Array.from({ length: 1001 }, (_, k) => k * 64)];
    const plan = partition(big, 8, 'slices');
    for (let r = 0; r < 8; r++) expect(Math.abs(plan.cuts[r + 1] - plan.cuts[r] - plan.total / 8)).toBeLessThanOrEqual(64);
  });
});

/** The plan statistics of the scenarios a test runs: how many projecting tensors are cut between ranks. */
function splitProjecting(backend: string, size: number, seeds: Array<{ seed: number; name: string; big: boolean }>, mode: 'slices' | 'tensors'): number {
  let n = 0;
  for (const { seed, name, big } of seeds) {
    const sc = scenario.makeScenario(seed, name, { big });
    const fake: Collective = {
      backend: 'fake', rank: 0, size, memory: { host: true, device: false }, timeoutMs: 1000, broken: null,
      allGather: (s, r) => { for (let k = 0; k < size; k++) (r as Float64Array).set(s as Float64Array, k * (s as Float64Array).length); },
      allReduce: () => undefined, describe: () => ({}), close: () => undefined,
    };
    const opt = new ShardedOptimizer(scenario.adamp[name], scenario.makeParams(sc), sc.options, { collective: fake, backend: backend as 'js', partition: mode });
    for (const t of opt.plan.tensors) if (t.pieces.length > 1 && sc.tensors[t.index].shape.length > 1 && opt.spec.projects) n++;
  }
  return n;
}

describe.each(BACKENDS)('sharded step on %s, in-process ranks', (backend) => {
  test.each([2, 3, 4])('%i ranks: every optimizer, both partitionings, bit-identical to one process over 6 steps', async (size) => {
    const tasks: Task[] = [];
    const seeds: Array<{ seed: number; name: string; big: boolean }> = [];
    OPTIMIZERS.forEach((name, k) => {
      for (const mode of ['slices', 'tensors'] as const) {
        const seed = 1000 * size + 10 * k + (mode === 'slices' ? 1 : 2) + (backend === 'js' ? 0 : 500);
        const big = (k + size) % 2 === 0;
        seeds.push({ seed, name, big });
        tasks.push({ fn: 'sharded', args: { seed, name, steps: 6, big, config: { partition: mode, backend, diagnostics: k % 2 === 0 ? 'full' : 'decisions' } } });
      }
    });
    const out = values(await runGroup(size, tasks));
    for (const rank of out) for (const r of rank) expect(r.compared).toBe(6);
    // the runs cut projecting tensors between ranks (else the partial sums were never exchanged)
    expect(splitProjecting(backend, size, seeds.filter((_, k) => k % 2 === 0), 'slices')).toBeGreaterThan(0);
  });

  test('3 ranks: gatherParams false (then gatherParams()), staging off, a large model in several arena rounds', async () => {
    const tasks: Task[] = [
      { fn: 'sharded', args: { seed: 71, name: 'AdamP', steps: 4, big: true, config: { partition: 'slices', backend, gatherParams: false } } },
      { fn: 'sharded', args: { seed: 72, name: 'SGDP', steps: 4, big: true, config: { partition: 'tensors', backend, staging: false } } },
      { fn: 'sharded', args: { seed: 73, name: 'AdamW', steps: 3, big: true, config: { partition: 'slices', backend, diagnostics: 'full' } } },
    ];
    const out = values(await runGroup(3, tasks, { slotBytes: 64 << 10 }));
    expect(out.flat().every((r) => r.ok)).toBe(true);
  });
});

describe('world size 1', () => {
  test.each(OPTIMIZERS)('%s: a sharded optimizer on SoloCollective is the single-process optimizer', (name) => {
    for (const backend of BACKENDS) {
      const sc = scenario.makeScenario(5 + name.length, name, { big: false });
      const r = scenario.checkSharded(new SoloCollective(), sc, 4, { partition: 'slices', backend, diagnostics: 'full' });
      expect(r.message).toBe('');
    }
  });
});

describe('data parallel', () => {
  test('averageGradients on one rank leaves gradients as they are; rankOrderMean is the rank-ordered float32 mean', () => {
    const g = Float32Array.of(1, 2, 3);
    averageGradients([{ data: new Float32Array(3), grad: g, shape: [3] }], new SoloCollective());
    expect(Array.from(g)).toEqual([1, 2, 3]);
    const parts = [Float32Array.of(1e8, 1), Float32Array.of(1, 1e-8), Float32Array.of(-1e8, 3)];
    const m = rankOrderMean(parts, new Float32Array(2));
    expect(m[0]).toBe(Math.fround(Math.fround(Math.fround(1e8 + 1) - 1e8) / 3));
  });

  test.each([2, 3, 4])("%i ranks: micro-batch gradients averaged in rank order, sharded steps: the single process's weights", async (size) => {
    const tasks: Task[] = OPTIMIZERS.map((name, k) => ({ fn: 'dataParallel', args: { seed: 300 + size * 10 + k, name, steps: 5, big: k === 0, config: { partition: k % 2 ? 'tensors' : 'slices' } } }));
    values(await runGroup(size, tasks));
  });

  test.each([2, 3, 4])('%i ranks, ZeRO-2: reduceScatterGradients (each rank averages only its range), the same weights', async (size) => {
    const tasks: Task[] = OPTIMIZERS.map((name, k) => ({ fn: 'dataParallel', args: { seed: 350 + size * 10 + k, name, steps: 4, big: k === 1, reduceScatter: true, bucketBytes: 1 << (10 + k), config: { partition: k % 2 ? 'tensors' : 'slices' } } }));
    values(await runGroup(size, tasks, { slotBytes: 1 << 14 }));
  });

  test("2 ranks: order 'any' is exact too (two addends commute)", async () => {
    values(await runGroup(2, [{ fn: 'dataParallel', args: { seed: 391, name: 'AdamP', steps: 4, order: 'any', config: {} } }]));
  });
});

describe('ranks that disagree', () => {
  test('different hyperparameters, or one rank\'s invalid gradient: every rank throws, nothing changes, the next step works', async () => {
    const out = values(await runGroup(3, [{ fn: 'disagree', args: { seed: 11, name: 'AdamP' } }]));
    out.forEach(([r], rank) => {
      expect(r.hyper.code).toBe('ERR_ADAMP_COLLECTIVE');
      expect(r.hyper.message).toMatch(/different hyperparameters.*rank 1 differs from rank 0/);
      expect(r.grad.code).toBe(rank === 1 ? 'ERR_ADAMP_INVALID_ARGUMENT' : 'ERR_ADAMP_COLLECTIVE');
      if (rank !== 1) expect(r.grad.message).toMatch(/inputs of rank 1 failed validation/);
      expect(r.unchanged).toBe(true);
      expect(r.thenSame).toBe(true);
    });
  });
});

describe('dead and stalled ranks', () => {
  test('a rank that exits at step 3 (partials): the others throw ERR_ADAMP_COLLECTIVE_TIMEOUT naming it and keep step 2', async () => {
    const res = await runGroup(3, [{ fn: 'faults', args: { seed: 21, name: 'AdamP', victim: 2, step: 3, phase: 'partials', mode: 'exit', timeoutMs: 20_000 } }], { failOnExit: true });
    expect(res[2]).toEqual({ exited: true, code: 7 });
    for (const r of values(res.slice(0, 2))) {
      const f = r[0];
      expect(f.threw).toBe(true);
      expect(f.code).toBe('ERR_ADAMP_COLLECTIVE_TIMEOUT');
      expect(f.missing).toEqual([2]);
      expect(f.step).toBe(3);
      expect(f.message).toMatch(/rank 2 failed: its worker exited with code 7|its worker exited with code 7/);
      expect(f.unchanged).toBe(true);
      expect(f.inDoubt).toBe(false);
      expect(f.after).toBe('ERR_ADAMP_COLLECTIVE');
    }
  });

  test('a rank that stalls past the deadline (params): the others time out naming it and its last call; no rank commits', async () => {
    const t0 = Date.now();
    const res = await runGroup(3, [{ fn: 'faults', args: { seed: 22, name: 'SGDP', victim: 1, step: 2, phase: 'params', mode: 'stall', stallMs: 3000, timeoutMs: 1000 } }]);
    const out = values(res);
    for (const rank of [0, 2]) {
      const f = out[rank][0];
      expect(f.code).toBe('ERR_ADAMP_COLLECTIVE_TIMEOUT');
      expect(f.missing).toEqual([1]);
      expect(f.message).toMatch(/rank 1 did not reach this collective within 1000 ms.*rank 1: last seen at step 2 \('partials'\)|gave up.*rank 1 did not reach/);
      expect(f.unchanged).toBe(true);
    }
    // the stalled rank wakes up to a failed group: it throws too, and has not committed either
    expect(out[1][0].code).toBe('ERR_ADAMP_COLLECTIVE_TIMEOUT');
    expect(out[1][0].unchanged).toBe(true);
    expect(Date.now() - t0).toBeLessThan(15_000);
  });

  test('a rank that exits in the final agreement: the others report the step in doubt', async () => {
    const res = await runGroup(3, [{ fn: 'faults', args: { seed: 23, name: 'AdamW', victim: 0, step: 2, phase: 'commit', mode: 'exit', timeoutMs: 20_000 } }], { failOnExit: true });
    for (const r of values(res.slice(1))) {
      expect(r[0].code).toBe('ERR_ADAMP_COLLECTIVE_TIMEOUT');
      expect(r[0].inDoubt).toBe(true);
      expect(r[0].phase).toBe('commit');
      expect(r[0].message).toMatch(/final agreement of step 2/);
    }
  });
});

describe('checkpoints', () => {
  let dir: string;
  beforeAll(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'adamp-dist-')); });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  for (const backend of BACKENDS) {
    test(`${backend}: 4 ranks save, merge to one file; 2 ranks refuse the shards, reshard them and continue; 3 ranks continue from the merged file; 4 ranks load their own shards`, async () => {
      const d = path.join(dir, backend);
      const base = { seed: 31, name: 'AdamP', big: true, steps: 3, dir: d, backend };
      values(await runGroup(4, [{ fn: 'trainAndSave', args: { ...base, merge: true, config: { partition: 'slices', backend } } }]));
      expect(fs.readdirSync(d).sort()).toEqual([
        'merged.safetensors', 'optimizer-rank-00000-of-00004.safetensors', 'optimizer-rank-00001-of-00004.safetensors',
        'optimizer-rank-00002-of-00004.safetensors', 'optimizer-rank-00003-of-00004.safetensors', 'optimizer.shards.json',
      ]);
      const two = values(await runGroup(2, [{ fn: 'loadAndContinue', args: { ...base, more: 3, config: { partition: 'tensors', backend } } }]));
      for (const [r] of two) {
        expect(r.merged).toBe('ok');
        expect(r.refused.code).toBe('ERR_ADAMP_INVALID_ARGUMENT');
        expect(r.refused.message).toMatch(/saved by 4 ranks with the 'slices' partition.*this optimizer runs on 2 ranks.*reshard: true/);
        expect(r.resharded).toBe(true);
        expect(r.epoch).toBe('3');
      }
      const three = values(await runGroup(3, [{ fn: 'loadAndContinue', args: { ...base, more: 2, fromMerged: true, config: { partition: 'slices', backend } } }]));
      for (const [r] of three) expect(r.resharded).toBe(false);
      const four = values(await runGroup(4, [{ fn: 'loadAndContinue', args: { ...base, more: 2, config: { partition: 'slices', backend } } }]));
      for (const [r] of four) expect(r.refused).toBe(false);
    });
  }

  test('a damaged shard: its reader throws ERR_ADAMP_BAD_CHECKPOINT, the others ERR_ADAMP_COLLECTIVE, no rank changes', async () => {
    const out = values(await runGroup(3, [{ fn: 'damagedShard', args: { seed: 41, name: 'SGD', dir: path.join(dir, 'damaged'), config: {} } }]));
    out.forEach(([r], rank) => {
      expect(r.err.code).toBe(rank === 2 ? 'ERR_ADAMP_BAD_CHECKPOINT' : 'ERR_ADAMP_COLLECTIVE');
      expect(r.unchanged).toBe(true);
    });
  });
});

describe('the data-parallel demo', () => {
  test('adamp demo --data-parallel on 3 worker threads: weights and state bit-identical to one process', async () => {
    const { runDataParallelDemo } = await import('../cli/demo/data-parallel');
    const res = (await runDataParallelDemo({ ranks: 3, steps: 40, batch: 6, backend: 'js' }))!;
    expect(res.paramsDiffering).toBe(0);
    expect(res.stateDiffering).toBe(0);
    expect(res.stateElements.reduce((a, b) => a + b, 0)).toBe(res.numel);
    expect(res.lines.join('\n')).toMatch(/weights: bit-identical/);
  });

  test('its options need --data-parallel, and --batch a multiple of the ranks', async () => {
    const { main } = await import('../cli/main');
    const io = () => { const o = { out: '', err: '' }; return { o, io: { stdout: { write: (s: string) => { o.out += s; } }, stderr: { write: (s: string) => { o.err += s; } } } }; };
    const a = io();
    expect(await main(['demo', '--ranks', '2'], a.io)).toBe(2);
    expect(a.o.err).toMatch(/--ranks needs --data-parallel/);
    const b = io();
    expect(await main(['demo', '--data-parallel', '--ranks', '3', '--batch', '4', '--steps', '2'], b.io)).toBe(1);
    expect(b.o.err).toMatch(/--batch 4 is not a multiple of the 3 ranks/);
  });
});

describe('validation', () => {
  test('config and params are checked', () => {
    const p = { data: new Float32Array(4), grad: null, shape: [2, 2] };
    expect(() => new ShardedOptimizer(AdamP, [p], {}, {} as never)).toThrow(/config.collective must be a Collective/);
    expect(() => new ShardedOptimizer(AdamP, [p], {}, { collective: new SoloCollective(), partition: 'rows' as never })).toThrow(/'slices' or 'tensors'/);
    expect(() => new ShardedOptimizer(SGD, [p], {} as never, { collective: new SoloCollective() })).toThrow(/lr is required/);
    expect(() => new ShardedOptimizer(AdamP, [p, p], {}, { collective: new SoloCollective() })).toThrow(/more than once/);
  });
});
