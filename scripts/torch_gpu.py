"""What the PyTorch GPU scripts share (scripts/bench_torch_gpu.py, scripts/half_torch_gpu.py): params
made on the device, a CUDA-event timing of one optimizer step, and the device-to-device copy
bandwidth that bounds every optimizer step. Imported from this folder; torch is imported by the
caller first (it exits 77 when PyTorch is missing).
"""
import json
import os
import statistics

import torch


def make_params(shapes, device, seed, dtype=None):
    """Params ~ N(0, 0.02) with grads ~ N(0, 1e-3), made on the device (GPT-2 small's 124M params
    and grads never cross PCIe); `dtype` (e.g. torch.bfloat16) rounds both after drawing them."""
    g = torch.Generator(device=device).manual_seed(seed)
    ps = []
    for s in shapes:
        p = torch.randn(*s, generator=g, device=device) * 0.02
        grad = torch.randn(*s, generator=g, device=device) * 1e-3
        if dtype is not None:
            p, grad = p.to(dtype), grad.to(dtype)
        p.requires_grad_(True)
        p.grad = grad
        ps.append(p)
    return ps


def time_step(opt, iters, warmup=5):
    """CUDA-event times of `iters` calls of opt.step() after `warmup`: median, min and mean in ms."""
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
    """GB/s of a 1 GiB device-to-device copy (bytes read plus written), the median of 10."""
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


def save(out, path):
    """Writes `out` as JSON to path (atomically: a run cut short leaves the last whole file)."""
    if path:
        with open(path + '.tmp', 'w') as f:
            f.write(json.dumps(out, indent=2) + '\n')
        os.replace(path + '.tmp', path)
