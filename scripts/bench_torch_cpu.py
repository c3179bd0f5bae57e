#!/usr/bin/env python3
"""PyTorch CPU side of the adamp benchmark.

Times, per parameter set and thread count, one optimizer step of:
  * the official AdamP and SGDP algorithm (clovaai/AdamP v0.3.0, as specified in docs/numerics.md:
    eager per-tensor ops, F.cosine_similarity on the channel view then the layer view, early
    return, decoupled weight decay), written out here;
  * torch.optim.Adam and torch.optim.SGD (momentum 0.9), foreach=False: PyTorch's own floor.

Gradients are either orthogonal to each output channel of the weights (the projection fires on
every eligible tensor) or random (it mostly does not). The learning rate is tiny so the weights,
and therefore the decisions, stay put across the timed steps; the arithmetic does not depend on it.

Usage: bench_torch_cpu.py --shapes bench/shapes.json --set resnet50 [--set gpt2-small]
                          [--threads 1,2] [--steps 5] [--warmup 2] [--algos adamp,sgdp,adam,sgd]
                          [--modes fire,random] [--out FILE]
Prints one JSON document (to --out or stdout); progress goes to stderr.
Run by `adamp bench` as a child process so ratios are measured in the same run; the parent sets
and records the glibc malloc environment (MALLOC_MMAP_THRESHOLD_ etc.), which swings PyTorch's
CPU step time 2-3x.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import torch

from official_torch import OfficialAdamP, OfficialSGDP  # noqa: E402  (this script's folder)

LR_ADAM = 1e-6
LR_SGD = 1e-6
MOMENTUM = 0.9
DEFAULT_THREADS = torch.get_num_threads()


def make_params(shapes, mode, seed):
    """Weights ~ U(-1, 1); grads random, or orthogonal to every output channel of the weight."""
    gen = torch.Generator().manual_seed(seed)
    params = []
    for shape in shapes:
        p = torch.nn.Parameter(torch.rand(shape, generator=gen) * 2 - 1)
        g = torch.rand(shape, generator=gen) * 2 - 1
        if mode == 'fire' and len(shape) > 1:
            pv, gv = p.data.view(shape[0], -1), g.view(shape[0], -1)
            coef = (gv * pv).sum(dim=1, keepdim=True) / (pv * pv).sum(dim=1, keepdim=True)
            gv -= coef * pv
        p.grad = g
        params.append(p)
    return params


def make_optimizer(algo, params, weight_decay):
    if algo == 'adamp':
        return OfficialAdamP(params, lr=LR_ADAM, weight_decay=weight_decay)
    if algo == 'sgdp':
        return OfficialSGDP(params, lr=LR_SGD, momentum=MOMENTUM, weight_decay=weight_decay)
    if algo == 'adam':
        return torch.optim.Adam(params, lr=LR_ADAM, weight_decay=0, foreach=False)
    if algo == 'sgd':
        return torch.optim.SGD(params, lr=LR_SGD, momentum=MOMENTUM, weight_decay=0, foreach=False)
    raise ValueError(f'unknown algo {algo!r}')


def time_steps(opt, steps, warmup):
    for _ in range(warmup):
        opt.step()
    counts = getattr(opt, 'counts', None)
    if counts is not None:
        for k in counts:
            counts[k] = 0
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        opt.step()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--shapes', required=True)
    ap.add_argument('--set', action='append', required=True, dest='sets')
    ap.add_argument('--threads', default='1,2')
    ap.add_argument('--steps', type=int, default=5)
    ap.add_argument('--warmup', type=int, default=2)
    ap.add_argument('--algos', default='adamp,sgdp,adam,sgd')
    ap.add_argument('--modes', default='fire,random')
    ap.add_argument('--weight-decay', type=float, default=0.0)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--out')
    args = ap.parse_args()

    with open(args.shapes) as f:
        all_shapes = json.load(f)
    threads = [int(t) for t in args.threads.split(',')]
    algos = args.algos.split(',')
    modes = args.modes.split(',')
    results = []
    for set_name in args.sets:
        shapes = all_shapes[set_name]['shapes']
        numel = sum(math.prod(s) for s in shapes)
        eligible = sum(1 for s in shapes if len(s) > 1)
        for mode in modes:
            for algo in algos:
                if algo in ('adam', 'sgd') and mode != modes[0]:
                    continue  # no projection: the gradient mode does not matter
                for nt in threads:
                    torch.set_num_threads(nt)
                    params = make_params(shapes, mode, args.seed)
                    opt = make_optimizer(algo, params, args.weight_decay)
                    times = time_steps(opt, args.steps, args.warmup)
                    counts = dict(opt.counts) if hasattr(opt, 'counts') else None
                    med = statistics.median(times)
                    row = {
                        'set': set_name, 'impl': 'torch-official' if algo in ('adamp', 'sgdp') else 'torch',
                        'algo': algo, 'mode': mode if algo in ('adamp', 'sgdp') else 'n/a', 'threads': nt,
                        'numel': numel, 'medianMs': med, 'timesMs': times,
                        'elementsPerSec': numel / (med / 1e3),
                    }
                    if counts is not None:
                        row['projection'] = {k: v / (args.steps * eligible) for k, v in counts.items()}
                    results.append(row)
                    print(f'torch {set_name} {algo:5s} {row["mode"]:6s} threads={nt}: '
                          f'{med:8.1f} ms/step', file=sys.stderr, flush=True)
                    del opt, params
    doc = {
        'torch': torch.__version__,
        'python': sys.version.split()[0],
        'defaultThreads': DEFAULT_THREADS,
        'malloc': {k: v for k, v in os.environ.items() if k.startswith('MALLOC_') or k == 'LD_PRELOAD'},
        'lr': {'adam': LR_ADAM, 'sgd': LR_SGD}, 'momentum': MOMENTUM, 'weightDecay': args.weight_decay,
        'steps': args.steps, 'warmup': args.warmup,
        'results': results,
    }
    text = json.dumps(doc)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(text + '\n')
    else:
        print(text)


if __name__ == '__main__':
    main()
