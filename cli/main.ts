#!/usr/bin/env node
/**
 * The `adamp` command: `adamp demo`, `adamp bench`, `adamp info`.
 * Exit status: 0 success, 1 failure while running, 2 usage error.
 */
import * as fs from 'fs';
import * as path from 'path';
import { formatOptions, parseArgs, UsageError, type OptionSpec, type Parsed } from './args';
import { PACKAGE_ROOT } from '../lib/core/package-root';
import { readEnv } from '../lib/core/env';

/** Where the CLI writes; tests pass their own. Progress bars go to `stderr`. */
export interface CliIO {
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown; isTTY?: boolean; columns?: number };
}

interface Command {
  summary: string;
  usage: string;
  options: readonly OptionSpec[];
  details?: string;
  run(parsed: Parsed, io: CliIO): Promise<number>;
}

const BACKEND_CHOICES = ['auto', 'js', 'native'] as const;

const DEMO_OPTIONS: readonly OptionSpec[] = [
  { name: 'steps', type: 'int', value: 'N', min: 1, max: 10_000_000, help: 'optimizer steps per run (toy demo; default 1000)' },
  { name: 'seed', type: 'int', value: 'N', min: 0, max: 2 ** 31 - 1, help: 'seed of the problem, the initial weights and the noise (default 1)' },
  { name: 'out', type: 'string', value: 'DIR', help: 'folder for the SVG and JSON results (default ./adamp-demo)' },
  { name: 'backend', type: 'string', value: 'NAME', choices: BACKEND_CHOICES, help: 'auto | js | native (default auto)' },
  { name: 'weight-decay', type: 'number', value: 'X', min: 0, help: 'weight decay of every run, each optimizer its own kind (AdamP, AdamW, SGDP: decoupled; SGD: L2 added to the gradient) (default 0)' },
  { name: 'tfjs', type: 'bool', help: 'train a small dense + batch-norm network with TensorFlow.js instead of the toy problem' },
  { name: 'epochs', type: 'int', value: 'N', min: 1, max: 1000, help: '--tfjs: training epochs (default 6 on the embedded set, 3 on IDX data)' },
  { name: 'data', type: 'string', value: 'DIR', help: '--tfjs: a folder with MNIST/Fashion-MNIST IDX files (plain or .gz) instead of the embedded dataset' },
  { name: 'train-size', type: 'int', value: 'N', min: 1, max: 10_000_000, help: '--tfjs: training images (embedded set: 3000; IDX data: the first 10000)' },
  { name: 'optimizers', type: 'list', value: 'LIST', choices: ['sgd', 'sgdp', 'adamw', 'adamp'], help: '--tfjs: which runs, e.g. adamw,adamp (default all four)' },
  { name: 'data-parallel', type: 'bool', help: 'train the toy network data-parallel with sharded AdamP (under mpirun: MPI ranks; else --ranks worker threads) and check the weights against one process' },
  { name: 'ranks', type: 'int', value: 'N', min: 1, max: 64, help: '--data-parallel without mpirun: worker threads (default 2)' },
  { name: 'batch', type: 'int', value: 'N', min: 1, max: 4096, help: '--data-parallel: samples per step over all ranks, a multiple of the ranks (default 8)' },
  { name: 'partition', type: 'string', value: 'MODE', choices: ['slices', 'tensors'], help: "--data-parallel: the state's partition (default slices)" },
];

const BENCH_OPTIONS: readonly OptionSpec[] = [
  { name: 'set', type: 'list', value: 'LIST', help: 'parameter sets: resnet50, gpt2-small (default both)' },
  { name: 'shapes', type: 'string', value: 'FILE', help: 'parameter sets file, same format as bench/shapes.json (default: the packaged one)' },
  { name: 'backends', type: 'list', value: 'LIST', choices: ['js', 'native'], help: 'backends to time (default: every available one)' },
  { name: 'threads', type: 'list', value: 'LIST', help: 'thread counts for native and torch (default 1,2)' },
  { name: 'steps', type: 'int', value: 'N', min: 1, max: 10_000, help: 'timed steps per case, median reported (default 7; gpt2-small 3)' },
  { name: 'warmup', type: 'int', value: 'N', min: 0, max: 1000, help: 'untimed steps before timing (default 2; gpt2-small 1)' },
  { name: 'no-torch', type: 'bool', help: 'skip the PyTorch comparison (official AdamP/SGDP, torch Adam/SGD)' },
  { name: 'python', type: 'string', value: 'PATH', help: 'python with torch for the comparison (default /usr/bin/python3)' },
  { name: 'torch-malloc', type: 'string', value: 'MODE', choices: ['tuned', 'default'], help: 'glibc malloc for PyTorch: tuned (MALLOC_MMAP_THRESHOLD_=32MB, default) or default' },
  { name: 'quick', type: 'bool', help: 'a smoke run: 2 timed steps, 1 warm-up, ResNet-50 only' },
  { name: 'out', type: 'string', value: 'FILE', help: 'write the results as JSON (default bench/results/cpu-<date>.json)' },
];

const INFO_OPTIONS: readonly OptionSpec[] = [
  { name: 'json', type: 'bool', help: 'print the report as JSON' },
];

const COMMANDS: Record<string, Command> = {
  demo: {
    summary: "show the paper's effect: SGD vs SGDP and AdamW vs AdamP on a scale-invariant problem",
    usage: 'adamp demo [--steps N] [--seed N] [--out DIR] [--backend NAME] [--tfjs ...] [--data-parallel ...]',
    options: DEMO_OPTIONS,
    details:
      'Optimizes a toy scale-invariant objective (weights followed by normalization) with momentum,\n' +
      'prints a table (final loss, weight norm, effective step size, projection share) and writes\n' +
      'DIR/toy-demo.svg (weight norm and effective step size over steps) and DIR/toy-demo.json.\n' +
      'With --tfjs it trains a small dense + batch-norm network with TensorFlow.js instead\n' +
      '(needs @tensorflow/tfjs-core, @tensorflow/tfjs-backend-cpu and @tensorflow/tfjs-layers).\n' +
      'With --data-parallel it trains the toy network with sharded AdamP on several ranks\n' +
      '(`mpirun -np 2 npx adamp demo --data-parallel`, or --ranks N worker threads) and checks\n' +
      'that the weights are those of one process on the whole batch, bit for bit.',
    run: runDemo,
  },
  bench: {
    summary: 'time the CPU backends against the official AdamP/SGDP in PyTorch, in the same run',
    usage: 'adamp bench [--set LIST] [--backends LIST] [--threads LIST] [--steps N] [--no-torch] [--out FILE]',
    options: BENCH_OPTIONS,
    details:
      'Steps the ResNet-50 and GPT-2-small parameter sets with AdamP and SGDP (projection firing:\n' +
      'gradients orthogonal to the weights; not firing: random gradients) on every backend, plus\n' +
      "the native one-pass Adam/SGD floor and PyTorch (official algorithm, torch's Adam/SGD).\n" +
      'GPT-2-small needs about 4 GB of memory per optimizer.',
    run: runBench,
  },
  info: {
    summary: 'which backends can run on this machine, and why the others cannot',
    usage: 'adamp info [--json]',
    options: INFO_OPTIONS,
    run: runInfo,
  },
};

function packageVersion(): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

function mainHelp(): string {
  const w = Math.max(...Object.keys(COMMANDS).map((k) => k.length));
  return [
    `adamp ${packageVersion()}: AdamP and SGDP optimizers for Node.js`,
    '',
    'Usage: adamp <command> [options]',
    '',
    'Commands:',
    ...Object.entries(COMMANDS).map(([k, c]) => `  ${k.padEnd(w)}  ${c.summary}`),
    '',
    "Run 'adamp <command> --help' for a command's options.",
    '',
  ].join('\n');
}

function commandHelp(name: string, c: Command): string {
  return [`Usage: ${c.usage}`, '', c.summary, ...(c.details ? ['', c.details] : []), '', 'Options:', formatOptions(c.options), ''].join('\n');
}

/** Runs the CLI with `argv` (without `node` and the script) and returns the exit status. */
export async function main(argv: readonly string[], io: CliIO = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined || first === '--help' || first === '-h' || first === 'help') {
    if (first === 'help' && rest[0] && COMMANDS[rest[0]]) io.stdout.write(commandHelp(rest[0], COMMANDS[rest[0]]));
    else io.stdout.write(mainHelp());
    return first === undefined ? 2 : 0;
  }
  if (first === '--version' || first === '-v') {
    io.stdout.write(`${packageVersion()}\n`);
    return 0;
  }
  const cmd = COMMANDS[first];
  if (!cmd) {
    io.stderr.write(`adamp: unknown command '${first}'. Commands: ${Object.keys(COMMANDS).join(', ')}. Run 'adamp --help'.\n`);
    return 2;
  }
  let parsed: Parsed;
  try {
    parsed = parseArgs(rest, cmd.options, `adamp ${first}`);
    if (parsed.positionals.length > 0) throw new UsageError(`unexpected argument '${parsed.positionals[0]}' for 'adamp ${first}'`);
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr.write(`adamp ${first}: ${e.message}\nRun 'adamp ${first} --help' for the options.\n`);
      return 2;
    }
    throw e;
  }
  if (parsed.help) {
    io.stdout.write(commandHelp(first, cmd));
    return 0;
  }
  try {
    return await cmd.run(parsed, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr.write(`adamp ${first}: ${e.message}\nRun 'adamp ${first} --help' for the options.\n`);
      return 2;
    }
    const err = e as Error;
    io.stderr.write(`adamp ${first}: error: ${err && err.message ? err.message : String(e)}\n`);
    if (readEnv('ADAMP_DEBUG') !== undefined) io.stderr.write(`${err && err.stack ? err.stack : ''}\n`);
    return 1;
  }
}

async function runDemo(parsed: Parsed, io: CliIO): Promise<number> {
  const o = parsed.options;
  const out = (o.out as string | undefined) ?? 'adamp-demo';
  const backend = o.backend as 'auto' | 'js' | 'native' | undefined;
  if (o.tfjs) {
    if (o.steps !== undefined) throw new UsageError('--steps is for the toy demo; use --epochs with --tfjs');
    if (o['weight-decay'] !== undefined) throw new UsageError('--weight-decay is for the toy demo');
    const { runTfjsDemo } = await import('./demo/tfjs-demo');
    const res = await runTfjsDemo({
      epochs: o.epochs as number | undefined,
      seed: o.seed as number | undefined,
      out,
      data: o.data as string | undefined,
      trainSize: o['train-size'] as number | undefined,
      optimizers: o.optimizers as string[] | undefined,
      backend,
      progress: io.stderr,
      log: (s) => io.stdout.write(s + '\n'),
    });
    io.stdout.write(`\n${res.table}\n\n`);
    for (const f of res.findings) io.stdout.write(`${f}\n`);
    io.stdout.write(`\nWrote ${res.files.join(', ')}\n`);
    return 0;
  }
  if (o['data-parallel']) return runDataParallel(parsed, io);
  for (const k of ['ranks', 'batch', 'partition']) {
    if (o[k] !== undefined) throw new UsageError(`--${k} needs --data-parallel`);
  }
  for (const k of ['epochs', 'data', 'optimizers', 'train-size']) {
    if (o[k] !== undefined) throw new UsageError(`--${k} needs --tfjs (the toy demo always runs SGD, SGDP, AdamW and AdamP)`);
  }
  const { runToyDemo } = await import('./demo/toy-demo');
  io.stdout.write('Toy problem: scale-invariant weights (each followed by a normalization) pulled towards fixed random\n' +
    'directions; SGD vs SGDP and AdamW vs AdamP from the same start, same gradient noise, cosine lr.\n');
  const res = await runToyDemo({
    steps: o.steps as number | undefined,
    seed: o.seed as number | undefined,
    out,
    backend,
    weightDecay: o['weight-decay'] as number | undefined,
    progress: io.stderr,
  });
  io.stdout.write(`\n${res.table}\n\n`);
  for (const f of res.findings) io.stdout.write(`${f}\n`);
  io.stdout.write(`\nBackend: ${res.runs[0].backend}. Wrote ${res.svgPath} and ${res.jsonPath}\n`);
  return 0;
}

async function runDataParallel(parsed: Parsed, io: CliIO): Promise<number> {
  const o = parsed.options;
  for (const k of ['epochs', 'data', 'optimizers', 'train-size', 'out']) {
    if (o[k] !== undefined) throw new UsageError(`--${k} is not an option of --data-parallel`);
  }
  const { runDataParallelDemo } = await import('./demo/data-parallel');
  const res = await runDataParallelDemo({
    steps: o.steps as number | undefined, seed: o.seed as number | undefined, batch: o.batch as number | undefined,
    ranks: o.ranks as number | undefined, backend: o.backend as 'auto' | 'js' | 'native' | undefined,
    partition: o.partition as 'slices' | 'tensors' | undefined, weightDecay: o['weight-decay'] as number | undefined,
  });
  if (res === null) return 0; // MPI ranks other than 0 print nothing
  io.stdout.write(res.lines.join('\n') + '\n');
  return res.paramsDiffering === 0 && res.stateDiffering === 0 ? 0 : 1;
}

async function runBench(parsed: Parsed, io: CliIO): Promise<number> {
  const o = parsed.options;
  const threads = (o.threads as string[] | undefined)?.map((t) => {
    const n = Number(t);
    if (!Number.isInteger(n) || n < 1 || n > 1024) throw new UsageError(`option --threads: '${t}' is not a positive integer`);
    return n;
  });
  const { runCpuBench } = await import('./bench/cpu');
  const res = await runCpuBench({
    shapes: o.shapes as string | undefined,
    sets: o.set as string[] | undefined,
    torchMalloc: o['torch-malloc'] as 'tuned' | 'default' | undefined,
    backends: o.backends as ('js' | 'native')[] | undefined,
    threads,
    steps: o.steps as number | undefined,
    warmup: o.warmup as number | undefined,
    torch: o['no-torch'] !== true,
    python: o.python as string | undefined,
    quick: o.quick === true,
    out: o.out as string | undefined,
    command: ['adamp bench', ...parsed.raw].join(' '),
    progress: io.stderr,
    log: (s) => io.stdout.write(s + '\n'),
  });
  io.stdout.write(`\nWrote ${res.outPath}\n`);
  return 0;
}

async function runInfo(parsed: Parsed, io: CliIO): Promise<number> {
  const { backends } = await import('../lib/index');
  const report = backends();
  if (parsed.options.json) {
    io.stdout.write(JSON.stringify({ version: packageVersion(), node: process.version, platform: `${process.platform}-${process.arch}`, backends: report }, null, 2) + '\n');
    return 0;
  }
  io.stdout.write(`adamp ${packageVersion()} on node ${process.version} (${process.platform}-${process.arch})\n\n`);
  for (const b of report) {
    io.stdout.write(`${b.name.padEnd(7)} ${b.available ? 'available  ' : 'unavailable'}  ${b.reason.split('\n').join('\n' + ' '.repeat(21))}\n`);
    if (b.details) {
      for (const [k, v] of Object.entries(b.details)) io.stdout.write(`${' '.repeat(21)}${k}: ${typeof v === 'string' ? v : JSON.stringify(v)}\n`);
    }
  }
  const auto = report.some((b) => b.name === 'native' && b.available) ? 'native' : 'js';
  io.stdout.write(`\nbackend 'auto' uses: ${auto} (for Float32Array params)\n`);
  return 0;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => { process.exitCode = code; },
    (e: unknown) => {
      process.stderr.write(`adamp: internal error: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
