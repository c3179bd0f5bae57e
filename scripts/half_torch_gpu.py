#!/usr/bin/env python3
"""The PyTorch side of the 16-bit GPU check (scripts/gpu-validate.sh step `half`).

On the ResNet-50 and GPT-2-small parameter sets of bench/shapes.json, in bfloat16 on one GPU:
  - times torch.optim.AdamW(fused=True) on bfloat16 params and grads (its state is bfloat16 too),
    with the bytes it moves per element (p read + write 4, g 2, exp_avg and exp_avg_sq read + write 8:
    14 B) and the achieved GB/s against a device-to-device copy's;
  - with --dump DIR, writes what scripts/bench-gpu-half.js compares against: for every tensor of
    each set, the bfloat16 bits of the params, of `steps` grads, and of the params after
    torch's fused AdamW took those steps (raw little-endian uint16, one file per set, plus meta.json).
Writes JSON (--out).

    python3 scripts/half_torch_gpu.py --shapes bench/shapes.json --out half_torch.json [--dump DIR] [--iters 30]
"""
import argparse
import json
import math
import os
import sys

try:
    import torch
except ImportError as e:  # pragma: no cover - reported, not hidden
    print(f"SKIP: PyTorch is not installed ({e})", file=sys.stderr)
    sys.exit(77)

from torch_gpu import copy_bandwidth_gbs, make_params, save, time_step  # noqa: E402  (this script's folder)

LR, BETAS, EPS, WD = 1e-3, (0.9, 0.999), 1e-8, 0.01
TORCH_BYTES = 14  # bf16 p r+w, g r, bf16 exp_avg r+w, exp_avg_sq r+w


def bits(t):
    return t.detach().contiguous().view(torch.int16).cpu().numpy().astype('<u2').tobytes()


def dump(name, shapes, device, steps, folder):
    ps = make_params(shapes, device, 7, torch.bfloat16)
    grads = [[(torch.randn(*p.shape, device=device) * 1e-3).to(torch.bfloat16) for p in ps] for _ in range(steps)]
    before = [bits(p) for p in ps]
    opt = torch.optim.AdamW(ps, lr=LR, betas=BETAS, eps=EPS, weight_decay=WD, fused=True)
    for s in range(steps):
        for p, g in zip(ps, grads[s]):
            p.grad = g
        opt.step()
    torch.cuda.synchronize()
    with open(os.path.join(folder, f'{name}.bin'), 'wb') as f:
        for k in range(len(ps)):
            f.write(before[k])
            for s in range(steps):
                f.write(bits(grads[s][k]))
            f.write(bits(ps[k]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--shapes', default='bench/shapes.json')
    ap.add_argument('--out')
    ap.add_argument('--dump')
    ap.add_argument('--steps', type=int, default=3)
    ap.add_argument('--iters', type=int, default=30)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print('SKIP: torch.cuda.is_available() is False (no GPU or driver)', file=sys.stderr)
        sys.exit(77)
    dev = torch.device('cuda')
    with open(args.shapes) as f:
        sets = json.load(f)
    bw = copy_bandwidth_gbs(dev)
    out = {'torch': torch.__version__, 'device': torch.cuda.get_device_name(0), 'copy_bandwidth_GBps': bw,
           'hyper': {'lr': LR, 'betas': BETAS, 'eps': EPS, 'weight_decay': WD}, 'steps': args.steps, 'sets': {}}
    if args.dump:
        os.makedirs(args.dump, exist_ok=True)
    for name in ('resnet50', 'gpt2-small'):
        if name not in sets:
            continue
        shapes = sets[name]['shapes']
        numel = sum(math.prod(s) for s in shapes)
        ps = make_params(shapes, dev, 1, torch.bfloat16)
        ms = time_step(torch.optim.AdamW(ps, lr=LR, betas=BETAS, eps=EPS, weight_decay=WD, fused=True), args.iters)['median_ms']
        del ps
        torch.cuda.empty_cache()
        r = {'tensors': len(shapes), 'numel': numel, 'adamw_fused_bf16_ms': ms, 'bytes_per_element': TORCH_BYTES,
             'achieved_GBps': TORCH_BYTES * numel / (ms * 1e-3) / 1e9, 'bound_ms': TORCH_BYTES * numel / (bw * 1e9) * 1e3}
        out['sets'][name] = r
        print(f"{name:10s} torch AdamW fused bf16 {ms:.4f} ms, {r['achieved_GBps']:.0f} GB/s of {bw:.0f} (bound {r['bound_ms']:.4f} ms)", flush=True)
        if args.dump:
            dump(name, shapes, dev, args.steps, args.dump)
            torch.cuda.empty_cache()
        save(out, args.out)
    if args.dump:
        with open(os.path.join(args.dump, 'meta.json'), 'w') as f:
            json.dump({'sets': {n: sets[n]['shapes'] for n in out['sets']}, 'steps': args.steps, 'hyper': out['hyper']}, f)
    if not args.out:
        print(json.dumps(out, indent=2))


if __name__ == '__main__':
    main()
