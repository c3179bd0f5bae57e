#!/usr/bin/env python3
"""The PyTorch side of the GPU benchmark: the anchors our fused AdamP / SGDP are measured against.

On the ResNet-50 and GPT-2-small parameter sets of bench/shapes.json (fp32 params on one GPU):
  - torch.optim.Adam(fused=True) and AdamW(fused=True, weight_decay=0.01)   (the targets for AdamP)
  - torch.optim.SGD(momentum=0.9, foreach=True)                              (the target for SGDP)
  - the official AdamP / SGDP algorithm (clovaai/AdamP v0.3.0 as described in
    shared/reference/SPEC.md), written here in eager PyTorch: ~20 kernels and host syncs per tensor
  - a device-to-device copy, for the bandwidth that bounds all of them
Times are CUDA-event medians of one optimizer step. Writes JSON (--out).

    python3 scripts/bench_torch_gpu.py --shapes bench/shapes.json --out torch.json [--iters 50]
"""
import argparse
import json
import math
import statistics
import sys

try:
    import torch
    import torch.nn.functional as F
except ImportError as e:  # pragma: no cover - reported, not hidden
    print(f"SKIP: PyTorch is not installed ({e})", file=sys.stderr)
    sys.exit(77)


class EagerAdamP(torch.optim.Optimizer):
    """AdamP as the official code computes it (SPEC.md s2 and s4), one tensor at a time."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, delta=0.1, wd_ratio=0.1, nesterov=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, delta=delta, wd_ratio=wd_ratio,
                                      nesterov=nesterov))

    @staticmethod
    def _channel_view(x):
        return x.view(x.size(0), -1)

    @staticmethod
    def _layer_view(x):
        return x.view(1, -1)

    def _projection(self, p, grad, perturb, delta, wd_ratio, eps):
        expand = [-1] + [1] * (len(p.shape) - 1)
        for view in (self._channel_view, self._layer_view):
            cos = F.cosine_similarity(view(grad), view(p.data), dim=1, eps=eps).abs_()
            if cos.max() < delta / math.sqrt(view(p.data).size(1)):  # a host sync, as in the official code
                p_n = p.data / view(p.data).norm(dim=1).view(expand).add_(eps)
                perturb -= p_n * view(p_n * perturb).sum(dim=1).view(expand)
                return perturb, wd_ratio
        return perturb, 1

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            beta1, beta2 = group['betas']
            for p in group['params']:
                if p.grad is None:
                    continue
                grad = p.grad
                state = self.state[p]
                if not state:
                    state['step'] = 0
                    state['exp_avg'] = torch.zeros_like(p)
                    state['exp_avg_sq'] = torch.zeros_like(p)
                m, v = state['exp_avg'], state['exp_avg_sq']
                state['step'] += 1
                bc1 = 1 - beta1 ** state['step']
                bc2 = 1 - beta2 ** state['step']
                m.mul_(beta1).add_(grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = (v.sqrt() / math.sqrt(bc2)).add_(group['eps'])
                step_size = group['lr'] / bc1
                if group['nesterov']:
                    perturb = (beta1 * m + (1 - beta1) * grad) / denom
                else:
                    perturb = m / denom
                ratio = 1
                if len(p.shape) > 1:
                    perturb, ratio = self._projection(p, grad, perturb, group['delta'], group['wd_ratio'], group['eps'])
                if group['weight_decay'] > 0:
                    p.mul_(1 - group['lr'] * group['weight_decay'] * ratio)
                p.add_(perturb, alpha=-step_size)


class EagerSGDP(EagerAdamP):
    """SGDP as the official code computes it (SPEC.md s3): without Nesterov the update aliases the buffer."""

    def __init__(self, params, lr, momentum=0, dampening=0, weight_decay=0, nesterov=False, eps=1e-8, delta=0.1, wd_ratio=0.1):
        torch.optim.Optimizer.__init__(self, params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                                          nesterov=nesterov, eps=eps, delta=delta, wd_ratio=wd_ratio))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            mom, damp = group['momentum'], group['dampening']
            for p in group['params']:
                if p.grad is None:
                    continue
                grad = p.grad
                state = self.state[p]
                if not state:
                    state['momentum'] = torch.zeros_like(p)
                buf = state['momentum']
                buf.mul_(mom).add_(grad, alpha=1 - damp)
                d_p = grad + mom * buf if group['nesterov'] else buf
                ratio = 1
                if len(p.shape) > 1:
                    d_p, ratio = self._projection(p, grad, d_p, group['delta'], group['wd_ratio'], group['eps'])
                if group['weight_decay'] > 0:
                    p.mul_(1 - group['lr'] * group['weight_decay'] * ratio / (1 - mom))
                p.add_(d_p, alpha=-group['lr'])


def make_params(shapes, device):
    g = torch.Generator(device='cpu').manual_seed(1)
    ps = []
    for s in shapes:
        p = (torch.randn(*s, generator=g) * 0.02).to(device).requires_grad_(True)
        p.grad = (torch.randn(*s, generator=g) * 1e-3).to(device)
        ps.append(p)
    return ps


def time_step(opt, iters, warmup=5):
    for _ in range(warmup):
        opt.step()
    torch.cuda.synchronize()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    ms = []
    for _ in range(iters):
        e0.record()
        opt.step()
        e1.record()
        e1.synchronize()
        ms.append(e0.elapsed_time(e1))
    return {'median_ms': statistics.median(ms), 'min_ms': min(ms), 'mean_ms': statistics.fmean(ms)}


def copy_bandwidth_gbs(device):
    n = (1 << 30) // 4
    a = torch.ones(n, device=device)
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    torch.cuda.synchronize()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    ms = []
    for _ in range(10):
        e0.record()
        b.copy_(a)
        e1.record()
        e1.synchronize()
        ms.append(e0.elapsed_time(e1))
    return 2 * n * 4 / (statistics.median(ms) * 1e-3) / 1e9


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
            ('adamp_eager', lambda ps: EagerAdamP(ps, lr=1e-3, weight_decay=0.01), args.eager_iters),
            ('sgdp_eager', lambda ps: EagerSGDP(ps, lr=0.1, momentum=0.9, weight_decay=1e-4), args.eager_iters),
        ]
        for key, make, iters in runs:
            ps = make_params(shapes, dev)
            r[key] = time_step(make(ps), iters)
            print(f"{name:10s} {key:12s} {r[key]['median_ms']:.4f} ms")
            del ps
            torch.cuda.empty_cache()
        r['bound_ms_28B'] = 28 * numel / (bw * 1e9) * 1e3
        r['bound_ms_20B'] = 20 * numel / (bw * 1e9) * 1e3
        out['sets'][name] = r
    text = json.dumps(out, indent=2)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(text + '\n')
    else:
        print(text)


if __name__ == '__main__':
    main()
