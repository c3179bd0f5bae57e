#!/usr/bin/env node
/*
 * The TensorFlow.js step benchmark: `applyGradients` only, on a ~2.2M-parameter convnet's
 * variables, tf.train.adam vs adamp/tfjs AdamP and tf.train.momentum vs SGDP, on the
 * tfjs-backend-cpu and tfjs-backend-wasm backends. The optimizers take turns step by step in one
 * process (each on its own copy of the variables, all from the same initial values and the same
 * gradients), so every ratio comes from the same run and the same machine state. Runs from the
 * compiled package: build first with `npm run build:ts`.
 *
 *   node scripts/bench-tfjs.js                                   # cpu and wasm, 15 timed steps
 *   node scripts/bench-tfjs.js --backends cpu --steps 5 --warmup 1
 *   node scripts/bench-tfjs.js --out bench/results/tfjs-2026-12-01.json
 *   node scripts/bench-tfjs.js --wasm /tmp/tfwasm/node_modules/@tensorflow/tfjs-backend-wasm
 *
 * Rows: `tfjs` (tf.train.adam / tf.train.momentum), `adamp-js` and `adamp-native` (adamp/tfjs on
 * adamp's js or native backend, stepping on the tfjs backend's storage), and `adamp-js-copies`
 * (the same with `inPlace: false`: every variable and gradient read back with dataSync and the
 * result uploaded, the path every other tfjs backend takes). Ratios are medians of per-round
 * ratios: each adamp step over the tfjs step of the same round (one step of each optimizer per
 * round, in an order that rotates every round). `core-js` and `core-native` step adamp's core
 * optimizer alone on Float32Arrays holding the same values (no TensorFlow.js): the floor of what
 * the adapter can reach on each adamp backend.
 *
 * tfjs-backend-wasm is not a dependency of adamp; install it (`npm i -D
 * @tensorflow/tfjs-backend-wasm@4.22.0`) or point --wasm at a copy that resolves the same
 * @tensorflow/tfjs-core as this package.
 */
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');

const ROOT = path.join(__dirname, '..');

const IMPLS = ['tfjs', 'adamp-js', 'adamp-native', 'adamp-js-copies', 'core-js', 'core-native'];

const USAGE = `usage: node scripts/bench-tfjs.js [--backends cpu,wasm] [--steps N] [--warmup N]
                                  [--impls ${IMPLS.join(',')}]
                                  [--algos adam,momentum] [--wasm DIR] [--out FILE] [--note TEXT]... [--quiet]`;

function parseArgs(argv) {
  const o = { backends: ['cpu', 'wasm'], steps: 15, warmup: 3, impls: ['tfjs', 'adamp-js', 'adamp-native', 'adamp-js-copies', 'core-js', 'core-native'], algos: ['adam', 'momentum'], wasm: null, out: null, quiet: false, note: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    const int = (min) => {
      const n = Number(val());
      if (!Number.isInteger(n) || n < min) throw new Error(`${a} must be an integer >= ${min}`);
      return n;
    };
    if (a === '--backends') o.backends = val().split(',').filter(Boolean);
    else if (a === '--steps') o.steps = int(1);
    else if (a === '--warmup') o.warmup = int(0);
    else if (a === '--impls') o.impls = val().split(',').filter(Boolean);
    else if (a === '--algos') o.algos = val().split(',').filter(Boolean);
    else if (a === '--wasm') o.wasm = path.resolve(val());
    else if (a === '--out') o.out = path.resolve(val());
    else if (a === '--quiet') o.quiet = true;
    else if (a === '--note') o.note.push(val());
    else if (a === '--help' || a === '-h') { process.stdout.write(`${USAGE}\n`); process.exit(0); }
    else throw new Error(`unknown argument ${a}\n${USAGE}`);
  }
  for (const b of o.backends) if (b !== 'cpu' && b !== 'wasm') throw new Error(`--backends: 'cpu' or 'wasm', got '${b}'`);
  for (const m of o.impls) if (!IMPLS.includes(m)) throw new Error(`--impls: unknown '${m}' (${IMPLS.join(', ')})`);
  for (const m of o.algos) if (m !== 'adam' && m !== 'momentum') throw new Error(`--algos: 'adam' or 'momentum', got '${m}'`);
  if (!o.impls.includes('tfjs')) throw new Error('--impls must include tfjs (the ratios are against it)');
  return o;
}

/**
 * The variables: a VGG-like convnet (conv kernels [3, 3, in, out] with bias and batch-norm
 * gamma/beta, a dense head), 2,194,688 float32 parameters in 21 tensors.
 */
function convnetShapes() {
  const shapes = [];
  const chans = [3, 64, 128, 256, 256, 512];
  for (let i = 1; i < chans.length; i++) {
    shapes.push({ name: `conv${i}/kernel`, shape: [3, 3, chans[i - 1], chans[i]] });
    shapes.push({ name: `conv${i}/bias`, shape: [chans[i]] });
    shapes.push({ name: `bn${i}/gamma`, shape: [chans[i]] });
    shapes.push({ name: `bn${i}/beta`, shape: [chans[i]] });
  }
  shapes.push({ name: 'dense/kernel', shape: [512, 100] });
  return shapes;
}

/** Seeded normals from the project's one generator (cli/rng.ts): the same values in every run. */
function normals(Rng, n, seed, scale) {
  const r = new Rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = scale * r.normal();
  return out;
}

function median(xs) {
  const a = xs.slice().sort((x, y) => x - y);
  const m = a.length >> 1;
  return a.length % 2 ? a[m] : (a[m - 1] + a[m]) / 2;
}

function loadWasmBackend(dir) {
  const id = dir ?? '@tensorflow/tfjs-backend-wasm';
  try {
    require(id);
    return { ok: true, from: dir ?? require.resolve('@tensorflow/tfjs-backend-wasm') };
  } catch (e) {
    return { ok: false, why: `cannot load ${id} (${e.message.split('\n')[0]}); install it with \`npm i -D @tensorflow/tfjs-backend-wasm@4.22.0\` or pass --wasm DIR` };
  }
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const log = o.quiet ? () => undefined : (line) => process.stderr.write(`${line}\n`);
  let adamp;
  let adampRoot;
  let Rng;
  try {
    ({ Rng } = require(path.join(ROOT, 'dist', 'cli', 'rng.js')));
    adampRoot = require(path.join(ROOT, 'dist', 'lib', 'index.js'));
    adamp = require(path.join(ROOT, 'dist', 'lib', 'tfjs', 'index.js'));
  } catch (e) {
    process.stderr.write(`bench-tfjs: cannot load dist/ (${e.message}); run \`npm run build:ts\` first\n`);
    process.exit(1);
  }
  const tf = require('@tensorflow/tfjs-core');
  require('@tensorflow/tfjs-backend-cpu');
  const wasm = o.backends.includes('wasm') ? loadWasmBackend(o.wasm) : null;
  const report = adampRoot.backends();
  const nativeOk = report.some((r) => r.name === 'native' && r.available);
  const notes = [];
  for (const r of report) if (!r.available) notes.push(`adamp backend '${r.name}' unavailable: ${r.reason.split('\n')[0]}`);

  const shapes = convnetShapes();
  const numel = shapes.reduce((a, s) => a + s.shape.reduce((x, y) => x * y, 1), 0);
  const init = shapes.map((s, i) => normals(Rng, s.shape.reduce((x, y) => x * y, 1), 1000 + i, 0.05));
  const gradInit = shapes.map((s, i) => normals(Rng, s.shape.reduce((x, y) => x * y, 1), 2000 + i, 0.01));
  const hp = { lr: 1e-4, momentum: 0.9 };

  const rows = [];
  const ratios = [];
  const loadStart = os.loadavg();
  const warn = console.warn;
  for (const backend of o.backends) {
    if (backend === 'wasm' && !wasm.ok) {
      notes.push(`wasm skipped: ${wasm.why}`);
      log(`wasm skipped: ${wasm.why}`);
      continue;
    }
    console.warn = () => undefined; // the cpu backend's tfjs-node banner
    await tf.setBackend(backend);
    await tf.ready();
    console.warn = warn;
    const threads = backend === 'wasm' && typeof tf.engine().backend.wasm?.tfjs?.getThreadsCount === 'function' ? tf.engine().backend.wasm.tfjs.getThreadsCount() : 1;
    for (const algo of o.algos) {
      const impls = o.impls.filter((m) => !m.endsWith('native') || nativeOk);
      if (o.impls.some((m) => m.endsWith('native')) && !nativeOk) log(`${backend}/${algo}: native rows skipped (the native addon is unavailable)`);
      const runs = impls.map((impl, k) => {
        if (impl.startsWith('core-')) {
          // The core optimizer alone on Float32Arrays of the same values and views: what the adapter adds is the difference.
          const params = shapes.map((s, i) => {
            const view = adamp.layerChannelView(s.name, s.shape);
            return { name: s.name, data: init[i].slice(), grad: gradInit[i], shape: view.shape, ...(view.channelAxis !== undefined ? { channelAxis: view.channelAxis } : {}) };
          });
          const config = { backend: impl === 'core-native' ? 'native' : 'js' };
          const core = algo === 'adam' ? new adampRoot.AdamP(params, { lr: hp.lr }, config) : new adampRoot.SGDP(params, { lr: hp.lr, momentum: hp.momentum }, config);
          const opt = { applyGradients: () => core.step(), dispose: () => core.dispose(), get backend() { return core.backend; }, get lastStepInfo() { return core.lastStepInfo; } };
          return { impl, opt, vars: [], grads: [], map: null, times: [] };
        }
        const vars = shapes.map((s, i) => tf.variable(tf.tensor(init[i].slice(), s.shape, 'float32'), true, `${backend}_${algo}_${impl}_${k}_${s.name}`));
        const grads = shapes.map((s, i) => tf.tensor(gradInit[i], s.shape, 'float32'));
        const map = {};
        vars.forEach((v, i) => { map[v.name] = grads[i]; });
        let opt;
        if (impl === 'tfjs') opt = algo === 'adam' ? tf.train.adam(hp.lr) : tf.train.momentum(hp.lr, hp.momentum);
        else {
          const config = { backend: impl === 'adamp-native' ? 'native' : 'js', ...(impl === 'adamp-js-copies' ? { inPlace: false } : {}) };
          opt = algo === 'adam' ? new adamp.AdamP({ lr: hp.lr, ...config }) : new adamp.SGDP({ lr: hp.lr, momentum: hp.momentum, ...config });
        }
        return { impl, opt, vars, grads, map, times: [] };
      });
      const label = `${backend}/${algo === 'adam' ? 'adam vs AdamP' : 'momentum vs SGDP'}`;
      log(`${label}: ${impls.join(', ')}; ${o.warmup} warm-up + ${o.steps} timed rounds`);
      const tensorsBefore = [];
      for (let step = 0; step < o.warmup + o.steps; step++) {
        // The order rotates every round, so each optimizer follows each other one equally often
        // (a step pays for the garbage the step before it left: tf.train.* on cpu leaves a lot).
        for (let k = 0; k < runs.length; k++) {
          const r = runs[(step + k) % runs.length];
          if (step === o.warmup) tensorsBefore.push(tf.memory().numTensors);
          const t0 = process.hrtime.bigint();
          r.opt.applyGradients(r.map);
          const ms = Number(process.hrtime.bigint() - t0) / 1e6;
          if (step >= o.warmup) r.times.push(ms);
        }
      }
      // (tf.train.* create their slots at the first step: checked only after a warm-up.)
      const leak = tf.memory().numTensors - tensorsBefore[0];
      if (o.warmup > 0 && leak !== 0) notes.push(`${label}: ${leak} tensors more after the timed steps than before`);
      const base = runs.find((r) => r.impl === 'tfjs');
      for (const r of runs) {
        const row = {
          backend, algo: r.impl === 'tfjs' ? (algo === 'adam' ? 'tf.train.adam' : 'tf.train.momentum') : (algo === 'adam' ? 'AdamP' : 'SGDP'),
          impl: r.impl, tfjsThreads: threads, numel, medianMs: +median(r.times).toFixed(3), timesMs: r.times.map((t) => +t.toFixed(3)),
        };
        if (r.impl !== 'tfjs') {
          row.adampBackend = r.opt.backend;
          row.projection = {};
          for (const i of r.opt.lastStepInfo) row.projection[i.projection] = (row.projection[i.projection] ?? 0) + 1;
          // Where the last step ran: on the backend's storage ('cpu', 'wasm') or through copies ('copy'), per variable.
          row.storage = {};
          for (const where of Object.values(r.opt.lastStepPaths ?? {})) row.storage[where] = (row.storage[where] ?? 0) + 1;
          const perStep = r.times.map((t, i) => t / base.times[i]);
          const ratio = { backend, what: `${row.algo} (${r.impl}) / ${base.impl === 'tfjs' ? (algo === 'adam' ? 'tf.train.adam' : 'tf.train.momentum') : ''}`, ratio: +median(perStep).toFixed(4), ratioOfMedians: +(median(r.times) / median(base.times)).toFixed(4) };
          ratios.push(ratio);
        }
        rows.push(row);
        log(`  ${row.impl.padEnd(16)} ${row.medianMs.toFixed(2).padStart(9)} ms${r.impl === 'tfjs' ? '' : `   x${ratios[ratios.length - 1].ratio.toFixed(3)} of ${base.impl}`}`);
      }
      for (const r of runs) {
        r.opt.dispose();
        r.vars.forEach((v) => v.dispose());
        r.grads.forEach((g) => g.dispose());
      }
    }
  }
  const result = {
    date: new Date().toISOString(),
    command: `node scripts/bench-tfjs.js ${process.argv.slice(2).map((a) => (/[\s'"]/.test(a) ? JSON.stringify(a) : a)).join(' ')}`.trim(),
    machine: {
      cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.cpus().length, memGB: +(os.totalmem() / 2 ** 30).toFixed(1),
      node: process.version, loadavgStart: loadStart, loadavgEnd: os.loadavg(),
      tfjsCore: tf.version_core, tfjsWasm: wasm && wasm.ok ? require(path.join(path.dirname(require.resolve(o.wasm ?? '@tensorflow/tfjs-backend-wasm')), '..', 'package.json')).version : null,
      adampBackends: report.map((r) => ({ name: r.name, available: r.available, reason: r.reason.split('\n')[0], ...(r.details ? { details: r.details } : {}) })),
      adampAddonPath: process.env.ADAMP_ADDON_PATH ?? null,
    },
    settings: { set: 'convnet (VGG-like, 21 tensors)', numel, tensors: shapes.length, steps: o.steps, warmup: o.warmup, hyperparameters: hp, gradients: 'fixed seeded normals (scale 0.01), the same every step', impls: o.impls },
    rows, ratios, notes: [...o.note, ...notes],
  };
  result.table = markdownTable(result);
  log(`\n${result.table}`);
  if (o.out) {
    fs.mkdirSync(path.dirname(o.out), { recursive: true });
    fs.writeFileSync(o.out, `${JSON.stringify(result, null, 2)}\n`);
    log(`wrote ${path.relative(process.cwd(), o.out)}`);
  }
  if (o.quiet || !o.out) process.stdout.write(`${JSON.stringify({ ratios, notes })}\n`);
}

/** The results as docs/tfjs.md shows them: median ms per step, and in parentheses the median per-round ratio to the tfjs optimizer. */
function markdownTable(result) {
  const cols = ['adamp-js', 'adamp-native', 'adamp-js-copies', 'core-js', 'core-native'].filter((c) => result.rows.some((r) => r.impl === c));
  const head = {
    'adamp-js': 'adamp/tfjs, js', 'adamp-native': 'adamp/tfjs, native', 'adamp-js-copies': 'adamp/tfjs, js, `inPlace: false`',
    'core-js': 'core alone, js', 'core-native': 'core alone, native',
  };
  const lines = [
    `| tfjs backend | tfjs optimizer (ms) | adamp | ${cols.map((c) => head[c]).join(' | ')} |`,
    `|---|---|---|${cols.map(() => '---|').join('')}`,
  ];
  for (const backend of [...new Set(result.rows.map((r) => r.backend))]) {
    for (const [tfName, ours] of [['tf.train.adam', 'AdamP'], ['tf.train.momentum', 'SGDP']]) {
      const base = result.rows.find((r) => r.backend === backend && r.algo === tfName);
      if (!base) continue;
      const cells = cols.map((c) => {
        const row = result.rows.find((r) => r.backend === backend && r.algo === ours && r.impl === c);
        const ratio = result.ratios.find((x) => x.backend === backend && x.what.startsWith(`${ours} (${c})`));
        return row ? `${row.medianMs.toFixed(1)} (${ratio.ratio.toFixed(2)}x)` : '-';
      });
      lines.push(`| ${backend} | ${tfName} ${base.medianMs.toFixed(1)} | ${ours} | ${cells.join(' | ')} |`);
    }
  }
  return lines.join('\n');
}

main().catch((e) => {
  process.stderr.write(`bench-tfjs: ${e.stack ?? e}\n`);
  process.exit(1);
});
