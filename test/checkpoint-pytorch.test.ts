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
import { AdamP, AdamW, SGD, SGDP } from '../lib/index';
import { encodeSafetensors, loadCheckpointSync, parseSafetensors, saveCheckpointSync, serializeCheckpoint, type TensorToWrite } from '../lib/checkpoint';
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
      // It carries no adamp digest: a foreign file, loaded only when the caller says so.
      const back = params(77);
      const fromTorch = makers[kind](back);
      expect(() => loadCheckpointSync(out, fromTorch, { params: true })).toThrow(expect.objectContaining({ code: 'ERR_ADAMP_BAD_CHECKPOINT' }));
      expect(loadCheckpointSync(out, fromTorch, { params: true, trust: 'foreign' }).verified).toBe(false);
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

// ---------------------------------------------------------------------------------------------
// Standard readers and PyTorch's own optimizers (python3; the reference `safetensors` package
// and torch where installed).

function pythonHas(modules: string): string | null {
  const r = spawnSync(PYTHON, ['-c', `import ${modules}`], { env, encoding: 'utf8' });
  if (r.error) return `${PYTHON} cannot run (${r.error.message})`;
  if (r.status !== 0) return `${PYTHON} lacks ${modules}: ${r.stderr.trim().split('\n').pop()}`;
  return null;
}
const noPython = pythonHas('hashlib, json, struct');
const noReference = pythonHas('safetensors, numpy');
const noTorchSave = pythonHas('torch, safetensors.torch');
for (const [what, why2] of [['the documented digest check', noPython], ['the reference safetensors reader', noReference], ['torch.optim files', noTorchSave]] as const) {
  if (why2) console.log(`[checkpoint-pytorch] skipped ${what}: ${why2}`);
}

// The Python check of docs/checkpoints.md, verbatim, then the reference reader's view of the file.
const CHECK_PY = `
import hashlib, json, struct, sys
buf = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', buf[:8])[0]
d = json.loads(buf[8:8 + n])['__metadata__']['checkpoint_sha256']
key = b'"checkpoint_sha256":"'
at = buf.index(key + d.encode() + b'"', 8, 8 + n) + len(key)
out = {'digest_ok': hashlib.sha256(buf[:at] + b'0' * 64 + buf[at + 64:]).hexdigest() == d}
if sys.argv[2] == 'reference':
    from safetensors import safe_open
    with safe_open(sys.argv[1], 'numpy') as f:
        out['metadata'] = f.metadata()
        out['tensors'] = {k: {'shape': list(f.get_tensor(k).shape), 'dtype': str(f.get_tensor(k).dtype), 'values': f.get_tensor(k).reshape(-1).tolist()} for k in f.keys()}
print(json.dumps(out))
`;

describe('standard readers', () => {
  (noPython ? test.skip : test)('the documented digest check (Python hashlib) accepts adamp\'s files and refuses a flipped bit; the reference safetensors reader reads them', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'adamp-st-'));
    try {
      const ps = params(9);
      const opt = new AdamP([{ params: ps.slice(0, 2), weightDecay: 0.1 }, { params: ps.slice(2), weightDecay: 0 }], { lr: 0.01 }, { backend: 'js' });
      for (let k = 0; k < 2; k++) { grads(ps, k).forEach((g, i) => { ps[i].grad = g; }); opt.step(); }
      const file = path.join(dir, 'a.safetensors');
      saveCheckpointSync(file, opt, { params: true, metadata: { epoch: '2' } });
      const mode = noReference ? 'digest' : 'reference';
      const r = spawnSync(PYTHON, ['-c', CHECK_PY, file, mode], { env, encoding: 'utf8' });
      expect(r.stderr).toBe('');
      const out = JSON.parse(r.stdout);
      expect(out.digest_ok).toBe(true);
      if (mode === 'reference') {
        const mine = parseSafetensors(fs.readFileSync(file), 'a');
        expect(out.metadata).toEqual({ ...mine.metadata });
        expect(Object.keys(out.tensors).sort()).toEqual(mine.tensors.map((t) => t.name).sort());
        for (const t of mine.tensors) {
          expect(out.tensors[t.name].shape).toEqual(t.shape);
          expect(out.tensors[t.name].dtype).toBe(t.dtype === 'F32' ? 'float32' : 'int64');
        }
        expect(Float32Array.from(out.tensors['state.1.exp_avg'].values)).toEqual(opt.stateDict().state[1].expAvg);
        expect(out.tensors['state.0.step'].values).toEqual([2]);
      }
      const flipped = Buffer.from(fs.readFileSync(file));
      flipped[100] ^= 4;
      fs.writeFileSync(path.join(dir, 'b.safetensors'), flipped);
      const r2 = spawnSync(PYTHON, ['-c', CHECK_PY, path.join(dir, 'b.safetensors'), 'digest'], { env, encoding: 'utf8' });
      if (r2.status === 0) expect(JSON.parse(r2.stdout).digest_ok).toBe(false); // (or the header no longer parses at all)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

// torch.optim.AdamW / SGD, 3 steps, state_dict() written by safetensors.torch.save_file under adamp's names.
const TORCH_SAVE_PY = `
import json, sys, torch
from safetensors.torch import save_file
kind, out = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
params = [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(5)), torch.nn.Parameter(torch.randn(2, 2))]
groups = [{'params': params[:2], 'weight_decay': 0.1}, {'params': params[2:], 'weight_decay': 0.0}]
opt = torch.optim.AdamW(groups, lr=1e-2) if kind == 'AdamW' else torch.optim.SGD(groups, lr=0.1, momentum=0.9)
for k in range(3):
    for i, p in enumerate(params):
        p.grad = None if (k == 1 and i == 2) else torch.randn_like(p)
    opt.step()
sd = opt.state_dict()
tensors = {'params.%d' % i: p.detach().clone() for i, p in enumerate(params)}
for i, s in sd['state'].items():
    for key, v in s.items():
        tensors['state.%d.%s' % (i, key)] = v.clone() if torch.is_tensor(v) else torch.tensor(v)
groups = [dict(g, betas=list(g['betas'])) if 'betas' in g else dict(g) for g in sd['param_groups']]
save_file(tensors, out, metadata={'format': 'adamp-optimizer/2', 'optimizer': kind, 'param_groups': json.dumps(groups)})
print(json.dumps(groups))
`;

describe('PyTorch\'s own optimizers (torch.optim + safetensors.torch.save_file)', () => {
  const torchMakers = {
    AdamW: (ps: Param[]) => new AdamW([{ params: ps.slice(0, 2), weightDecay: 0.1 }, { params: ps.slice(2), weightDecay: 0 }], { lr: 0.5 }, { backend: 'js' }),
    SGD: (ps: Param[]) => new SGD([{ params: ps.slice(0, 2), weightDecay: 0.1 }, { params: ps.slice(2), weightDecay: 0 }], { lr: 0.5 }, { backend: 'js' }),
  };
  (noTorchSave ? test.skip : test).each(['AdamW', 'SGD'] as const)('%s: a state_dict saved by safetensors.torch.save_file loads with trust: foreign, values byte for byte', (kind) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'adamp-torchsave-'));
    try {
      const file = path.join(dir, 'torch.safetensors');
      const r = spawnSync(PYTHON, ['-c', TORCH_SAVE_PY, kind, file], { env, encoding: 'utf8' });
      expect(r.stderr).toBe('');
      const torchGroups = JSON.parse(r.stdout);
      const shapes = [[4, 3], [5], [2, 2]];
      const ps: Param[] = shapes.map((shape, i) => ({ name: `p${i}`, data: new Float32Array(shape.reduce((a, b) => a * b, 1)), grad: null, shape }));
      const opt = torchMakers[kind](ps);
      // No adamp digest: refused unless the caller trusts the file.
      expect(() => loadCheckpointSync(file, opt, { params: true })).toThrow(expect.objectContaining({ code: 'ERR_ADAMP_BAD_CHECKPOINT', message: expect.stringMatching(/trust: 'foreign'/) }));
      expect(loadCheckpointSync(file, opt, { params: true, trust: 'foreign' })).toEqual({ optimizer: kind, includesParams: true, metadata: {}, verified: false });
      const t = parseSafetensors(fs.readFileSync(file), 'torch');
      const f32 = (name: string) => { const rec = t.byName.get(name)!; return new Float32Array(new Uint8Array(rec.bytes).buffer); };
      ps.forEach((p, i) => expect(p.data).toEqual(f32(`params.${i}`)));
      const sd = opt.stateDict() as unknown as { state: Record<number, Record<string, unknown>>; paramGroups: Array<Record<string, unknown>> };
      for (const i of [0, 1, 2]) {
        if (kind === 'AdamW') {
          expect(t.byName.get(`state.${i}.step`)!.dtype).toBe('F32'); // torch >= 1.12 keeps a float32 step
          expect(sd.state[i].step).toBe(f32(`state.${i}.step`)[0]);
          expect(sd.state[i].expAvg).toEqual(f32(`state.${i}.exp_avg`));
          expect(sd.state[i].expAvgSq).toEqual(f32(`state.${i}.exp_avg_sq`));
        } else {
          expect(sd.state[i].momentumBuffer).toEqual(f32(`state.${i}.momentum_buffer`));
        }
      }
      if (kind === 'AdamW') expect([0, 1, 2].map((i) => sd.state[i].step)).toEqual([3, 3, 2]);
      sd.paramGroups.forEach((g, gi) => {
        expect(g.lr).toBe(torchGroups[gi].lr);
        expect(g.weightDecay).toBe(torchGroups[gi].weight_decay);
      });
      // Saved again by adamp, it is a verified format-2 file that loads without trust.
      const again = torchMakers[kind](ps.map((p) => ({ ...p, data: new Float32Array(p.data.length) })));
      fs.writeFileSync(path.join(dir, 'again.safetensors'), serializeCheckpoint(opt, { params: true }));
      expect(loadCheckpointSync(path.join(dir, 'again.safetensors'), again, { params: true }).verified).toBe(true);
      expect(again.stateDict()).toEqual(opt.stateDict());
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
