#!/usr/bin/env node
/**
 * The model of a sharded AdamP/SGDP step past this machine (docs/distributed.md, "Past this
 * machine"): memory per rank and step time for 8 to 1,024 ranks on GPT-2-small to 1B-parameter
 * shapes, the payload of the partial sums against the gradient all-reduce, ring and tree costs on
 * 100-400 Gb/s links; and the same model calibrated on this machine against the measured 2- and
 * 4-rank runs (bench/results/distributed-measured-{1,2,4}.json, from scripts/distributed-measure.js).
 *
 *   node scripts/distributed-model.js                 # prints the tables
 *   node scripts/distributed-model.js --write         # also writes bench/results/distributed-model.{md,json}
 *                                                     # and the tables into docs/distributed.md (between markers)
 *
 * Everything is computed from the shapes and the protocol's record sizes (4 doubles per channel of
 * a projecting tensor, 3 per unit for the norms; lib/backends/js/loops.ts, native/cpu/step.cpp),
 * and the partition is the real one (dist/lib/distributed/partition.js).
 */
'use strict';
const fs = require('fs');
const path = require('path');
const root = path.resolve(__dirname, '..');
const { partition } = require(path.join(root, 'dist/lib/distributed/partition.js'));

// ---------------------------------------------------------------------------------------------
// Shapes: GPT-2 with nn.Linear's [out, in] layout (output channels first, as the projection's
// channel view assumes), vocabulary 50257, context 1024.
const MODELS = [
  { name: 'GPT-2 small', layers: 12, d: 768 },
  { name: 'GPT-2 medium', layers: 24, d: 1024 },
  { name: 'GPT-2 large', layers: 36, d: 1280 },
  { name: 'GPT-2 1B', layers: 18, d: 2048 },
];
const VOCAB = 50257, CTX = 1024;

function gpt2Shapes(L, D, V = VOCAB, C = CTX) {
  const s = [[V, D], [C, D]];
  for (let l = 0; l < L; l++) s.push([D], [D], [3 * D, D], [3 * D], [D, D], [D], [D], [D], [4 * D, D], [4 * D], [D, 4 * D], [D]);
  s.push([D], [D]);
  return s;
}
const numelOf = (s) => s.reduce((a, b) => a * b, 1);

/** Unit starts of a tensor: 'rows' (one unit per channel row: the js engine, and the finest cut), or 'cpu' (native/cpu/step.cpp: 32768-element units). */
function units(shape, kind, projects) {
  const n = numelOf(shape);
  const eligible = shape.length > 1;
  const out = [];
  const BLOCK = kind === 'cpu' ? 32768 : 65536;
  if (!projects || !eligible) { for (let i = 0; i < n; i += BLOCK) out.push(i); out.push(n); return out; }
  const channels = shape[0], inner = n / channels;
  if (kind === 'rows') { for (let c = 0; c < channels; c++) out.push(c * inner); out.push(n); return out; }
  if (inner > 32768) { // Pieces
    const ppr = Math.ceil(inner / 32768);
    for (let c = 0; c < channels; c++) for (let p = 0; p < ppr; p++) out.push(c * inner + p * 32768);
    out.push(n); return out;
  }
  const cpu = Math.max(1, Math.floor(32768 / inner));
  for (let c = 0; c < channels; c += cpu) out.push(c * inner);
  out.push(n);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Costs. Times in seconds, sizes in bytes. alpha: per message step; beta: seconds per byte.
const log2 = (n) => Math.ceil(Math.log2(n));
const allGather = {
  ring: (N, S, a, b) => (N - 1) * a + ((N - 1) / N) * S * b,
  tree: (N, S, a, b) => log2(N) * a + ((N - 1) / N) * S * b, // recursive doubling / Bruck: what MPI picks for small messages
};
const allReduce = {
  ring: (N, S, a, b) => 2 * (N - 1) * a + (2 * (N - 1) / N) * S * b,
  tree: (N, S, a, b) => 2 * log2(N) * a + 2 * S * b, // (double binary) tree: log latency, about twice the bytes per link
};
const best = (f, N, S, a, b) => Math.min(f.ring(N, S, a, b), f.tree(N, S, a, b));

/** Per-element costs of the optimizer step on a GPU (memory-bound): bytes moved per element / bandwidth. */
const GPU = { name: 'H100-class GPU, 3.0 TB/s effective HBM', bandwidth: 3.0e12, adampBytes: 44, sgdpBytes: 32, stagingBytes: 8 + 8 + 4 };
const ALPHA = 5e-6; // one message step between nodes (InfiniBand / RoCE, software included)
const LINKS = [100, 200, 400]; // Gb/s per rank
const RANKS = [8, 16, 32, 64, 128, 256, 512, 1024];

function modelOf(m) {
  const shapes = gpt2Shapes(m.layers, m.d);
  const P = shapes.reduce((a, s) => a + numelOf(s), 0);
  let channels = 0, unitsCpu = 0, unitsRows = 0;
  for (const s of shapes) {
    if (s.length > 1) channels += s[0];
    unitsCpu += units(s, 'cpu', true).length - 1;
    unitsRows += units(s, 'rows', true).length - 1;
  }
  return { ...m, shapes, P, channels, partialsBytes: 32 * channels, normsBytesCpu: 24 * unitsCpu, unitsCpu, unitsRows };
}

function row(m, N, gbps, opt = 'AdamP') {
  const b = 8 / (gbps * 1e9);
  const S = 4 * m.P;
  const stateB = opt === 'AdamP' ? 8 : 4;
  const gradAR = best(allReduce, N, S, ALPHA, b);
  const paramsAG = best(allGather, N, S, ALPHA, b);
  const partials = { ring: allGather.ring(N, m.partialsBytes, ALPHA, b), tree: allGather.tree(N, m.partialsBytes, ALPHA, b) };
  const agreements = 2 * allGather.tree(N, 16 * N, ALPHA, b);
  const perElem = (opt === 'AdamP' ? GPU.adampBytes : GPU.sgdpBytes) / GPU.bandwidth;
  const computeReplica = m.P * perElem;
  const computeShard = (m.P / N) * (perElem + GPU.stagingBytes / GPU.bandwidth);
  const ddp = gradAR + computeReplica;
  const sharded = gradAR + computeShard + Math.min(partials.ring, partials.tree) + agreements + paramsAG;
  const shardedRS = best(allGather, N, S, ALPHA, b) + computeShard + Math.min(partials.ring, partials.tree) + agreements + paramsAG; // reduceScatterGradients: a reduce-scatter (the all-gather's cost) instead of the all-reduce (ZeRO-2)
  return {
    N, gbps, gradAR, paramsAG, partialsRing: partials.ring, partialsTree: partials.tree, agreements, computeReplica, computeShard, ddp, sharded, shardedRS,
    memReplica: (8 + stateB) * m.P, memSharded: 12 * m.P + (4 + 2 * stateB + 4) * m.P / N, memLean: 8 * m.P + stateB * m.P / N,
  };
}

const ms = (s) => (s * 1e3 >= 100 ? (s * 1e3).toFixed(0) : s * 1e3 >= 10 ? (s * 1e3).toFixed(1) : (s * 1e3).toFixed(2));
const gb = (x) => (x / 1e9).toFixed(2);
const mb = (x) => (x / 1e6).toFixed(2);

function table(head, rows) {
  return [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

function imbalance(m, N, kind) {
  const plan = partition(m.shapes.map((s) => units(s, kind, true)), N, 'slices');
  let max = 0;
  for (let r = 0; r < N; r++) max = Math.max(max, plan.cuts[r + 1] - plan.cuts[r]);
  return max / (m.P / N);
}

// ---------------------------------------------------------------------------------------------
// The model on this machine, against measured runs.
function calibrated() {
  const dir = path.join(root, 'bench/results');
  const runs = fs.readdirSync(dir).filter((f) => /^distributed-measured-\d+(-allreduce)?\.json$/.test(f))
    .map((f) => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')))
    .sort((a, b) => a.ranks - b.ranks || String(a.grads).localeCompare(String(b.grads)));
  if (runs.length === 0) return null;
  const med = (xs) => { const s = xs.slice().sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
  const one = runs.find((r) => r.ranks === 1);
  const out = [];
  for (const r of runs) {
    const P = r.model.params;
    const shapes = gpt2Shapes(r.model.layers, r.model.d, r.model.vocab, r.model.ctx);
    let channels = 0;
    for (const s of shapes) if (s.length > 1) channels += s[0];
    const N = r.ranks;
    const phase = (k, f = 'seconds') => med(r.steps.map((s) => (s.phases[k] ? s.phases[k][f] || 0 : 0)));
    const waits = med(r.steps.map((s) => Object.values(s.phases).reduce((a, p) => a + (p.wait || 0), 0)));
    const measured = { step: med(r.steps.map((s) => s.step)), gradients: phase('gradients'), partials: phase('partials'), params: phase('params'), agreements: phase('begin') + phase('commit'), waits };
    const stepWaits = med(r.steps.map((s) => ['begin', 'partials', 'partial lengths', 'params', 'commit'].reduce((a, k) => a + (s.phases[k] ? s.phases[k].wait || 0 : 0), 0)));
    measured.compute = measured.step - measured.partials - measured.params - measured.agreements - stepWaits;
    // calibration from this run's own micro-benchmarks and the 1-rank run's compute
    const S4 = 4 << 20;
    const alpha = N > 1 ? r.micro.smallAllGatherSeconds / log2(N) : 0;
    const beta = N > 1 ? Math.max(0, r.micro.allGather4MiBSeconds - alpha * log2(N)) / (((N - 1) / N) * S4) : 0;
    const perElemCompute = one ? (med(one.steps.map((s) => s.step)) - med(one.steps.map((s) => (s.phases.params ? s.phases.params.seconds : 0)))) / P : med(r.single.seconds) / P;
    const cores = r.machine ? r.machine.cores : 2;
    const predicted = {
      compute: perElemCompute * (P / N) * Math.max(1, N / cores),
      partials: N > 1 ? allGather.tree(N, 32 * channels, alpha, beta) : 0,
      params: N > 1 ? allGather.tree(N, 4 * P, alpha, beta) : 0,
      agreements: N > 1 ? 2 * allGather.tree(N, 16 * N, alpha, beta) : 0,
      gradients: N > 1 ? ((r.grads === 'allreduce' ? r.micro.allReduceRank4MiBSeconds : r.micro.reduceScatterRank4MiBSeconds) / S4) * 4 * P : 0,
    };
    predicted.step = predicted.compute + predicted.partials + predicted.params + predicted.agreements;
    out.push({ N, grads: r.grads, P, load: r.machine ? r.machine.load[0] : null, date: r.date, alpha, beta, perElemCompute, single: med(r.single.seconds), measured, predicted });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

function main() {
  const models = MODELS.map(modelOf);
  const md = [];
  md.push(`Generated by \`node scripts/distributed-model.js --write\`. Links: ${LINKS.join(', ')} Gb/s per rank, ${ALPHA * 1e6} us per message step; optimizer step on a ${GPU.name} (AdamP ${GPU.adampBytes} B/element over both passes, + ${GPU.stagingBytes} B/element of two-phase staging on the shard); fp32 params, grads and state. Collective times take the cheaper of ring and tree (recursive doubling for all-gathers).`);
  md.push('');
  md.push('#### The models');
  md.push('');
  md.push(table(['model', 'params', 'tensors', 'channels of projected tensors', 'partials per step', 'gradient all-reduce payload', 'partials / gradients', 'native units'], models.map((m) => [
    m.name, `${(m.P / 1e6).toFixed(1)} M`, m.shapes.length, m.channels, `${mb(m.partialsBytes)} MB`, `${mb(4 * m.P)} MB`, `${((100 * m.partialsBytes) / (4 * m.P)).toFixed(2)}%`, m.unitsCpu,
  ])));
  md.push('');
  md.push('#### Memory per rank (AdamP, GB)');
  md.push('');
  md.push(table(['model', 'replica (DDP)', ...RANKS.map((N) => `sharded, ${N} ranks`), 'lean (design), 1024 ranks'], models.map((m) => [
    m.name, gb(row(m, 8, 100).memReplica), ...RANKS.map((N) => gb(row(m, N, 100).memSharded)), gb(row(m, 1024, 100).memLean),
  ])));
  md.push('');
  md.push('"sharded" is this implementation: params and grads replicated (8 B/param), the flat staging buffer of the param all-gather (4 B/param), and per rank 1/N of the state, its staging copy and the staged piece of the params. "lean" is the design without the staging buffers (`staging: false` and params that are views of one flat buffer, gathered in place; a follow-up).');
  md.push('');
  for (const m of models) {
    md.push(`#### ${m.name}: one step of AdamP (ms)`);
    md.push('');
    const rows = [];
    for (const gbps of LINKS) {
      for (const N of RANKS) {
        const r = row(m, N, gbps);
        rows.push([`${gbps}`, N, ms(r.gradAR), ms(r.computeReplica), ms(r.ddp), ms(r.computeShard), `${ms(r.partialsRing)} / ${ms(r.partialsTree)}`, ms(r.agreements), ms(r.paramsAG), ms(r.sharded), ms(r.shardedRS)]);
      }
    }
    md.push(table(['Gb/s', 'ranks', 'grad all-reduce', 'step, replica', 'DDP total', 'step, shard', 'partials ring / tree', 'begin + commit', 'param all-gather', 'ZeRO-1 total', 'ZeRO-2 total'], rows));
    md.push('');
  }
  md.push('#### Balance of the slices (largest rank / mean)');
  md.push('');
  md.push(table(['model', 'units', ...[8, 64, 256, 1024].map((N) => `${N} ranks`)], models.flatMap((m) => [
    [m.name, 'channel rows (js)', ...[8, 64, 256, 1024].map((N) => imbalance(m, N, 'rows').toFixed(3))],
    [m.name, '32K-element (native)', ...[8, 64, 256, 1024].map((N) => imbalance(m, N, 'cpu').toFixed(3))],
  ])));
  md.push('');
  const cal = calibrated();
  if (cal) {
    md.push('#### Calibrated on this machine, against measured runs');
    md.push('');
    md.push(`Measured with \`mpirun --oversubscribe -np N node scripts/distributed-measure.js\` (GPT-2-shaped, ${(cal[0].P / 1e6).toFixed(1)} M params, native backend, one thread per rank, Open MPI over shared memory, 2 cores, load average ${cal.map((c) => c.load).filter((x) => x !== null).map((x) => x.toFixed(1)).join(' / ')} from other work), medians over the timed steps. The model's inputs come from the same runs: alpha and beta from the run's all-gather of 8 doubles and of 4 MiB, the gradient exchange from its 4 MiB all-reduce or reduce-scatter, the per-element compute from the 1-rank run, compute shared by ranks over the 2 cores. Every timed collective is preceded by a barrier: a phase's time is its transfer once every rank has arrived; the time until the last rank arrived is the last column (not in the model: time slicing of the ranks and of the other work on this machine). The step's time includes the barriers.`);
    md.push('');
    md.push(table(['ranks', 'gradients', 'alpha (us)', 'beta (GB/s)', 'compute meas. / model', 'partials meas. / model', 'params meas. / model', 'begin+commit meas. / model', 'step meas. / model', 'gradients meas. / model', 'waiting for the last rank'], cal.map((c) => [
      c.N, c.N === 1 ? '-' : c.grads === 'allreduce' ? 'all-reduce' : 'reduce-scatter', (c.alpha * 1e6).toFixed(1), c.beta > 0 ? (1 / c.beta / 1e9).toFixed(2) : '-',
      `${ms(c.measured.compute)} / ${ms(c.predicted.compute)}`, `${ms(c.measured.partials)} / ${ms(c.predicted.partials)}`, `${ms(c.measured.params)} / ${ms(c.predicted.params)}`,
      `${ms(c.measured.agreements)} / ${ms(c.predicted.agreements)}`, `${ms(c.measured.step)} / ${ms(c.predicted.step)}`, `${ms(c.measured.gradients)} / ${ms(c.predicted.gradients)}`, ms(c.measured.waits),
    ])));
    md.push('');
    const multi = cal.filter((c) => c.N > 1);
    const range = (k) => {
      const r = multi.map((c) => c.measured[k] / c.predicted[k]).filter((x) => Number.isFinite(x) && x > 0);
      return r.length ? `${Math.min(...r).toFixed(1)}x to ${Math.max(...r).toFixed(1)}x` : '-';
    };
    md.push(`Measured / model over the multi-rank runs: param all-gather ${range('params')}, gradient exchange ${range('gradients')}, partials ${range('partials')}, `
      + `begin + commit ${range('agreements')}, compute ${range('compute')}, whole step ${range('step')}; waiting for the last rank took `
      + `${multi.map((c) => ms(c.measured.waits)).join(', ')} ms per step.`);
    md.push('');
  }
  const text = md.join('\n');
  const json = { generated: 'scripts/distributed-model.js', alpha: ALPHA, links: LINKS, gpu: GPU, models: models.map((m) => ({ name: m.name, params: m.P, channels: m.channels, partialsBytes: m.partialsBytes, rows: RANKS.flatMap((N) => LINKS.map((g) => row(m, N, g))) })), calibrated: cal };
  process.stdout.write(text + '\n');
  if (process.argv.includes('--write')) {
    fs.writeFileSync(path.join(root, 'bench/results/distributed-model.md'), text + '\n');
    fs.writeFileSync(path.join(root, 'bench/results/distributed-model.json'), JSON.stringify(json, null, 1) + '\n');
    const doc = path.join(root, 'docs/distributed.md');
    if (fs.existsSync(doc)) {
      const d = fs.readFileSync(doc, 'utf8');
      const a = d.indexOf('<!-- model:begin -->'), b = d.indexOf('<!-- model:end -->');
      if (a >= 0 && b > a) fs.writeFileSync(doc, `${d.slice(0, a)}<!-- model:begin -->\n${text}\n${d.slice(b)}`);
    }
  }
}

main();
