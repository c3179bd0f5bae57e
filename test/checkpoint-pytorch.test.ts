/**
 * The checkpoint mapping onto the official PyTorch optimizers, checked against the real thing:
 * adamp saves, examples/pytorch_interop.py loads the file into clovaai/AdamP's optimizer with
 * PyTorch's load_state_dict, steps it, writes the result back, and adamp loads that.
 *
 * Needs python3 with torch and the official `adamp` package (set ADAMP_OFFICIAL_DIR to a folder
 * holding clovaai/AdamP's `adamp/`, or have it installed); skipped, saying why, otherwise.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { AdamP, SGDP } from '../lib/index';
import { encodeSafetensors, loadCheckpointSync, saveCheckpointSync, type TensorToWrite } from '../lib/checkpoint';
import type { Param } from '../lib/types';
import { randn, rng } from './helpers/random';

const PYTHON = process.env.ADAMP_PYTHON ?? '/usr/bin/python3';
const env = { ...process.env, PYTHONPATH: [process.env.ADAMP_OFFICIAL_DIR, process.env.PYTHONPATH].filter(Boolean).join(path.delimiter) };

function unavailable(): string | null {
  const r = spawnSync(PYTHON, ['-c', 'import torch, numpy, adamp; print(torch.__version__)'], { env, encoding: 'utf8' });
  if (r.error) return `${PYTHON} cannot run (${r.error.message})`;
  if (r.status !== 0) return `${PYTHON} lacks torch, numpy or the official adamp package (set ADAMP_OFFICIAL_DIR): ${r.stderr.trim().split('\n').pop()}`;
  return null;
}
const why = unavailable();
if (why) console.log(`[checkpoint-pytorch] skipped: ${why}`);
const maybe = why ? test.skip : test;

const SHAPES = [[8, 3, 3, 3], [10, 20], [10], [1, 16]];

function params(seed: number): Param[] {
  const r = rng(seed);
  return SHAPES.map((shape, i) => ({ name: `p${i}`, data: randn(r, shape.reduce((a, b) => a * b, 1)), grad: null, shape }));
}

/** Step k's gradients: random, or orthogonal to the weights (projection fires) every other step; param 2 has none at step 1. */
function grads(ps: Param[], k: number): Array<Float32Array | null> {
  return ps.map((p, i) => {
    if (k === 1 && i === 2) return null;
    const g = randn(rng(31 * k + i), p.data.length, 0.1);
    if (k % 2 === 0) {
      let gw = 0, ww = 0;
      for (let j = 0; j < g.length; j++) { gw += g[j] * p.data[j]; ww += p.data[j] * p.data[j]; }
      for (let j = 0; j < g.length; j++) g[j] = Math.fround(g[j] - (gw / ww) * p.data[j]);
    }
    return g;
  });
}

function relDiff(a: Float32Array, b: Float32Array): number {
  let diff = 0, scale = 0;
  for (let i = 0; i < a.length; i++) { diff = Math.max(diff, Math.abs(a[i] - b[i])); scale = Math.max(scale, Math.abs(b[i])); }
  return scale === 0 ? diff : diff / scale;
}

describe('PyTorch interoperability (official clovaai/AdamP)', () => {
  const makers = {
    AdamP: (ps: Param[]) => new AdamP([{ params: ps.slice(0, 2), weightDecay: 0.1 }, { params: ps.slice(2), weightDecay: 0 }], { lr: 0.01, nesterov: true }, { backend: 'js' }),
    SGDP: (ps: Param[]) => new SGDP([{ params: ps.slice(0, 2), weightDecay: 1e-3 }, { params: ps.slice(2) }], { lr: 0.1, momentum: 0.9 }, { backend: 'js' }),
  };

  maybe.each(['AdamP', 'SGDP'] as const)('%s: adamp checkpoint -> official optimizer.load_state_dict -> 3 steps -> back into adamp matches adamp\'s own 3 steps', (kind) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'adamp-torch-'));
    try {
      const ps = params(5);
      const opt = makers[kind](ps);
      for (let k = 0; k < 3; k++) { grads(ps, k).forEach((g, i) => { ps[i].grad = g; }); opt.step(); }
      const ckpt = path.join(dir, 'in.safetensors');
      saveCheckpointSync(ckpt, opt, { params: true });
      // Continue in adamp, recording the gradients for PyTorch.
      const recorded: TensorToWrite[] = [];
      for (let k = 0; k < 3; k++) {
        grads(ps, 3 + k).forEach((g, i) => {
          ps[i].grad = g;
          if (g) recorded.push({ name: `grad.${k}.${i}`, dtype: 'F32', shape: ps[i].shape, data: g });
        });
        opt.step();
      }
      fs.writeFileSync(path.join(dir, 'grads.safetensors'), encodeSafetensors(recorded, {}));
      const out = path.join(dir, 'out.safetensors');
      const r = spawnSync(PYTHON, [path.join(__dirname, '..', 'examples', 'pytorch_interop.py'), ckpt, path.join(dir, 'grads.safetensors'), '3', out], { env, encoding: 'utf8' });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);

      // The official optimizer's state_dict, written back with the same mapping, loads into adamp.
      const back = params(77);
      const fromTorch = makers[kind](back);
      loadCheckpointSync(out, fromTorch, { params: true });
      const a = opt.stateDict();
      const b = fromTorch.stateDict();
      expect(b.paramGroups).toEqual(a.paramGroups);
      expect(Object.keys(b.state)).toEqual(Object.keys(a.state));
      // Float32 results agree to the reference tolerance (reduction orders differ in the last bits).
      back.forEach((p, i) => expect(relDiff(p.data, ps[i].data)).toBeLessThan(1e-6));
      for (const i of Object.keys(a.state).map(Number)) {
        const sa = a.state[i] as unknown as Record<string, Float32Array | number>;
        const sb = b.state[i] as unknown as Record<string, Float32Array | number>;
        for (const key of Object.keys(sa)) {
          if (typeof sa[key] === 'number') expect(sb[key]).toBe(sa[key]);
          else expect(relDiff(sb[key] as Float32Array, sa[key] as Float32Array)).toBeLessThan(1e-6);
        }
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
