#!/usr/bin/env node
/*
 * The CPU benchmark, same as `npx adamp bench` / `npm run bench` (options: --help).
 * Runs from the compiled package: build first with `npm run build:ts`.
 *
 *   node scripts/bench-cpu.js                         # ResNet-50 + GPT-2-small, every backend, PyTorch
 *   node scripts/bench-cpu.js --quick                 # smoke run: ResNet-50, 2 timed steps
 *   node scripts/bench-cpu.js --set resnet50 --out bench/results/cpu-resnet50.json
 */
'use strict';
const path = require('path');

let cli;
try {
  cli = require(path.join(__dirname, '..', 'dist', 'cli', 'main.js'));
} catch (e) {
  process.stderr.write(`bench-cpu: cannot load dist/cli/main.js (${e.message}); run \`npm run build:ts\` first\n`);
  process.exit(1);
}
cli.main(['bench', ...process.argv.slice(2)]).then((code) => { process.exitCode = code; });
