/**
 * The Node GPU benchmarks that scripts/gpu-validate.sh and gpu-validate-more.sh run on a leased
 * GPU (scripts/bench-gpu-half.js, scripts/bench-gpu-node.js), run here end to end as child
 * processes on a tiny shape set wherever the CUDA backend can run: a GPU, or the CPU emulation
 * that scripts/test-cuda-emulated.sh builds (with --emulation). A script error is found here,
 * not in the GPU's few minutes. Without CUDA the run is skipped with the reason printed, and the
 * scripts' own refusal (exit 77 and the reason as JSON) is checked instead.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cudaProvider } from '../lib/backends/cuda';

const root = path.join(__dirname, '..');
const report = cudaProvider.report();
const emulated = report.available && /emulation/i.test(report.reason ?? '');
if (!report.available) {
  // eslint-disable-next-line no-console
  console.warn(`GPU benchmark script runs skipped: ${report.reason}`);
}

let dir = '';
let shapes = '';
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'adamp-gpu-scripts-'));
  shapes = path.join(dir, 'shapes.json');
  // A conv weight, a vector and a matrix (ResNet-50's kinds), a matrix and a vector (GPT-2's).
  fs.writeFileSync(shapes, JSON.stringify({ resnet50: { shapes: [[8, 4, 3, 3], [8], [16, 8]] }, 'gpt2-small': { shapes: [[12, 8], [12]] } }));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function run(script: string, args: string[]) {
  const r = spawnSync(process.execPath, [path.join(root, 'scripts', script), '--shapes', shapes, '--iters', '2', '--reps', '1', ...args], { encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const readJson = (file: string) => JSON.parse(fs.readFileSync(file, 'utf8'));

describe.each(['bench-gpu-half.js', 'bench-gpu-node.js'])('%s', (script) => {
  (report.available && !emulated ? test.skip : test)('without a GPU (or on the emulation without --emulation) it exits 77 and says why, as JSON', () => {
    const r = run(script, []);
    expect(r.status).toBe(77);
    const said = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(said.skipped).toBe(true);
    expect(said.reason).toBe(report.reason);
  });
});

(report.available ? test : test.skip)('bench-gpu-node.js: AdamP and SGDP on device and host params, every set, no device memory left behind', () => {
  const out = path.join(dir, 'node.json');
  const r = run('bench-gpu-node.js', ['--emulation', '--out', out]);
  expect(r.stderr).not.toMatch(/Error/);
  expect(r.status).toBe(0);
  const res = readJson(out);
  expect(Object.keys(res.sets)).toEqual(['resnet50', 'gpt2-small']);
  expect(res.sets.resnet50.numel).toBe(8 * 4 * 3 * 3 + 8 + 16 * 8);
  for (const set of Object.values(res.sets) as Array<Record<string, { device_params_ms: number; host_params_ms: number }>>) {
    for (const kind of ['adamp', 'sgdp']) {
      expect(set[kind].device_params_ms).toBeGreaterThan(0);
      expect(set[kind].host_params_ms).toBeGreaterThan(0);
    }
  }
  expect(res.deviceAllocationsAfter.liveAllocations).toBe(0);
  expect(res.deviceAllocationsAfter.liveBytes).toBe(0);
});

(report.available ? test : test.skip)('bench-gpu-half.js: bfloat16 AdamW and AdamP timed on every set; the kernels equal the js backend bit for bit', () => {
  const out = path.join(dir, 'half.json');
  const r = run('bench-gpu-half.js', ['--emulation', '--out', out]);
  expect(r.status).toBe(0);
  const res = readJson(out);
  for (const name of ['resnet50', 'gpt2-small']) {
    for (const key of ['adamw_bf16', 'adamw_bf16_master', 'adamp_bf16_master']) expect(res.sets[name][key].ms).toBeGreaterThan(0);
  }
  expect(res.parity).toEqual({
    resnet50_adamw_master_false_nearest: { elements_differing: 0 },
    resnet50_adamw_master_true_stochastic: { elements_differing: 0 },
  });
});
