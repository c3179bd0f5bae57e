#!/usr/bin/env node
/*
 * The 16-bit CUDA path on a GPU (scripts/gpu-validate.sh step `half`), through the public Node API:
 *   - bfloat16 DeviceTensor params and grads of the ResNet-50 and GPT-2-small sets (bench/shapes.json),
 *     AdamW and AdamP, with and without float32 master weights: ms/step (median of `reps` runs of
 *     `iters` steps queued back to back, then synchronize()) and GB/s of the bytes each element
 *     actually moves (AdamW: bf16 p read + write 4, bf16 g 2, float32 exp_avg and exp_avg_sq read +
 *     write 16 = 22 B; with master weights the float32 master is read and written instead of the
 *     bf16 param read: 28 B; AdamP's projected tensors read p, g and the state again in pass 2);
 *   - the CUDA kernels against the js backend bit for bit on the ResNet-50 set (bf16, three steps,
 *     master weights on and off, stochastic rounding on the master run);
 *   - with --torch DIR (scripts/half_torch_gpu.py --dump DIR): our AdamW on bfloat16 params without
 *     master weights against torch.optim.AdamW(fused=True) on bfloat16 params, same bits in, after
 *     the same steps: the share of identical elements and the largest distance in bf16 ulps (PyTorch
 *     keeps its moments in bfloat16, we keep them in float32, so they are not expected to agree everywhere).
 *   node scripts/bench-gpu-half.js [--out FILE] [--iters 20] [--reps 5] [--torch DIR] [--shapes FILE] [--emulation]
 * Exit 77 when no usable CUDA device (or only the CPU emulation, unless --emulation); 1 when the
 * CUDA and js backends differ.
 */
'use strict';
const fs = require('fs');
const path = require('path');
const { adamp, cli, requireCuda, loadShapes, filled, numelOf, timeSteps } = require('./gpu-bench-common.js');

const c = cli();
const { out, iters, reps } = c;
const torchDir = c.opt('torch', null);
const report = requireCuda(c);
const { DeviceTensor, AdamW, AdamP, float32ToHalf } = adamp;
const shapes = loadShapes(c);
const HYPER = { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01 };

function deviceParams(list) {
  return list.map((shape, k) => ({
    data: DeviceTensor.fromHost(float32ToHalf(filled(numelOf(shape), 11 + k, 0.04), 'bfloat16'), shape, { dtype: 'bfloat16' }),
    grad: DeviceTensor.fromHost(float32ToHalf(filled(numelOf(shape), 101 + k, 2e-3), 'bfloat16'), shape, { dtype: 'bfloat16' }),
  }));
}
function free(ps) {
  for (const p of ps) {
    p.data.dispose();
    if (p.grad instanceof DeviceTensor) p.grad.dispose();
  }
}

const result = { device: report.reason || 'cuda', iters, reps, sets: {}, parity: {}, torch: {} };
let failed = false;
const save = () => { if (out) fs.writeFileSync(out, JSON.stringify(result, null, 2) + '\n'); };

// timing and bandwidth per byte moved
for (const name of ['resnet50', 'gpt2-small']) {
  if (!shapes[name]) continue;
  const list = shapes[name].shapes;
  const numel = list.reduce((a, s) => a + numelOf(s), 0);
  const r = { tensors: list.length, numel };
  for (const [key, Cls, master, bytes] of [['adamw_bf16', AdamW, false, 22], ['adamw_bf16_master', AdamW, true, 28], ['adamp_bf16_master', AdamP, true, null]]) {
    const ps = deviceParams(list);
    const o = new Cls(ps, HYPER, { backend: 'cuda', masterWeights: master, diagnostics: 'decisions' });
    const ms = timeSteps(o, c).median_ms;
    r[key] = { ms, ...(bytes ? { bytes_per_element: bytes, achieved_GBps: (bytes * numel) / (ms * 1e-3) / 1e9 } : {}) };
    console.log(`${name.padEnd(10)} ${key.padEnd(18)} ${ms.toFixed(4)} ms/step` + (bytes ? `, ${r[key].achieved_GBps.toFixed(0)} GB/s of ${bytes} B/element` : ''));
    o.dispose();
    free(ps);
  }
  result.sets[name] = r;
  save();
}

// the kernels against the js backend, bit for bit (ResNet-50 set)
if (shapes.resnet50) {
  const list = shapes.resnet50.shapes;
  for (const [master, rounding] of [[false, 'nearest'], [true, 'stochastic']]) {
    const cfg = { masterWeights: master, rounding, seed: 3 };
    const dev = deviceParams(list);
    const host = list.map((shape, k) => ({ data: dev[k].data.toHost(new Uint16Array(numelOf(shape))), dtype: 'bfloat16', shape, grad: dev[k].grad.toHost(new Uint16Array(numelOf(shape))) }));
    const a = new AdamW(dev, HYPER, { backend: 'cuda', ...cfg });
    const b = new AdamW(host, HYPER, { backend: 'js', ...cfg });
    for (let s = 0; s < 3; s++) {
      a.step();
      b.step();
    }
    let diff = 0;
    host.forEach((p, k) => {
      const d = dev[k].data.toHost(new Uint16Array(p.data.length));
      for (let i = 0; i < d.length; i++) if (d[i] !== p.data[i]) diff++;
    });
    const key = `resnet50_adamw_master_${master}_${rounding}`;
    result.parity[key] = { elements_differing: diff };
    console.log(`parity ${key}: ${diff} elements differ from the js backend`);
    if (diff !== 0) failed = true;
    a.dispose();
    free(dev);
    save();
  }
}

// against torch.optim.AdamW(fused=True) on bfloat16 params
if (torchDir) {
  const meta = JSON.parse(fs.readFileSync(path.join(torchDir, 'meta.json'), 'utf8'));
  for (const [name, list] of Object.entries(meta.sets)) {
    const buf = fs.readFileSync(path.join(torchDir, `${name}.bin`));
    const words = new Uint16Array(buf.buffer, buf.byteOffset, buf.byteLength / 2);
    let o = 0;
    const take = (n) => { const a = words.slice(o, o + n); o += n; return a; };
    const ps = [];
    const want = [];
    const grads = [];
    for (const shape of list) {
      const n = numelOf(shape);
      ps.push({ data: DeviceTensor.fromHost(take(n), shape, { dtype: 'bfloat16' }), grad: DeviceTensor.zeros(shape, { dtype: 'bfloat16' }) });
      grads.push(Array.from({ length: meta.steps }, () => take(n)));
      want.push(take(n));
    }
    const h = meta.hyper;
    const opt2 = new AdamW(ps, { lr: h.lr, betas: h.betas, eps: h.eps, weightDecay: h.weight_decay }, { backend: 'cuda', masterWeights: false });
    for (let s = 0; s < meta.steps; s++) {
      ps.forEach((p, k) => p.grad.copyFromHost(grads[k][s]));
      opt2.step();
    }
    let same = 0;
    let total = 0;
    let worst = 0;
    const ord = (b) => (b & 0x8000 ? -(b & 0x7fff) : b);
    ps.forEach((p, k) => {
      const got = p.data.toHost(new Uint16Array(want[k].length));
      for (let i = 0; i < got.length; i++) {
        total++;
        if (got[i] === want[k][i]) same++;
        else worst = Math.max(worst, Math.abs(ord(got[i]) - ord(want[k][i])));
      }
    });
    result.torch[name] = { elements: total, identical: same, share_identical: same / total, max_ulps: worst };
    console.log(`vs torch AdamW fused bf16 ${name}: ${(100 * same / total).toFixed(4)}% identical, max ${worst} bf16 ulps`);
    opt2.dispose();
    free(ps);
    save();
  }
}
save();
process.exit(failed ? 1 : 0);
