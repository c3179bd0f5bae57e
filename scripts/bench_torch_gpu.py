#!/usr/bin/env python3
"""The PyTorch side of the GPU benchmark: the anchors our fused AdamP / SGDP are measured against.

On the ResNet-50 and GPT-2-small parameter sets of bench/shapes.json (fp32 params on one GPU):
  - torch.optim.Adam(fused=True) and AdamW(fused=True, weight_decay=0.01)   (the targets for AdamP)
  - torch.optim.SGD(momentum=0.9, foreach=True)                              (the target for SGDP)
  - the official AdamP / SGDP algorithm (clovaai/AdamP v0.3.0 as described in
    docs/numerics.md), written here in eager PyTorch: ~20 kernels and host syncs per tensor
  - a device-to-device copy, for the bandwidth that bounds all of them
Times are CUDA-event medians of one optimizer step; params and grads are made on the device.
Writes JSON (--out).

    python3 scripts/bench_torch_gpu.py --shapes bench/shapes.json --out torch.json [--iters 50]
"""
import argparse
import json
import math
import sys

try:
    import torch
except ImportError as e:  # pragma: no cover - reported, not hidden
    print(f"SKIP: PyTorch is not installed ({e})", file=sys.stderr)
    sys.exit(77)

from official_torch import OfficialAdamP, OfficialSGDP  # noqa: E402  (this script's folder)
from torch_gpu import copy_bandwidth_gbs, make_params, save, time_step  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--shapes', default='bench/shapes.json')
    ap.add_argument('--out')
    ap.add_argument('--iters', type=int, default=50)
    ap.add_argument('--eager-iters', type=int, default=10)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print('SKIP: torch.cuda.is_available() is False (no GPU or driver)', file=sys.stderr)
        sys.exit(77)
    dev = torch.device('cuda')
    with open(args.shapes) as f:
        sets = json.load(f)
    bw = copy_bandwidth_gbs(dev)
    out = {
        'torch': torch.__version__, 'cuda': torch.version.cuda, 'device': torch.cuda.get_device_name(0),
        'compute_capability': '.'.join(map(str, torch.cuda.get_device_capability(0))),
        'copy_bandwidth_GBps': bw, 'iters': args.iters, 'eager_iters': args.eager_iters, 'sets': {},
    }
    print(f"device: {out['device']}, torch {out['torch']}, copy bandwidth {bw:.0f} GB/s")
    for name in ('resnet50', 'gpt2-small'):
        if name not in sets:
            continue
        shapes = sets[name]['shapes']
        numel = sum(math.prod(s) for s in shapes)
        r = {'tensors': len(shapes), 'numel': numel}
        runs = [
            ('adam_fused', lambda ps: torch.optim.Adam(ps, lr=1e-3, fused=True), args.iters),
            ('adamw_fused', lambda ps: torch.optim.AdamW(ps, lr=1e-3, weight_decay=0.01, fused=True), args.iters),
            ('sgd_foreach', lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, foreach=True), args.iters),
            ('adamp_eager', lambda ps: OfficialAdamP(ps, lr=1e-3, weight_decay=0.01), args.eager_iters),
            ('sgdp_eager', lambda ps: OfficialSGDP(ps, lr=0.1, momentum=0.9, weight_decay=1e-4), args.eager_iters),
        ]
        out['sets'][name] = r
        r['bound_ms_28B'] = 28 * numel / (bw * 1e9) * 1e3
        r['bound_ms_20B'] = 20 * numel / (bw * 1e9) * 1e3
        for key, make, iters in runs:
            ps = make_params(shapes, dev, 1)
            r[key] = time_step(make(ps), iters)
            print(f"{name:10s} {key:12s} {r[key]['median_ms']:.4f} ms", flush=True)
            del ps
            torch.cuda.empty_cache()
            save(out, args.out)  # after every run: a run cut short keeps what it measured
    if not args.out:
        print(json.dumps(out, indent=2))


if __name__ == '__main__':
    main()
