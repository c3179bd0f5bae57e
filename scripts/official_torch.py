"""The official AdamP / SGDP algorithm (clovaai/AdamP v0.3.0, as specified in
docs/numerics.md#adamp, #sgdp, #the-projection), written out in eager PyTorch for the benchmarks:
per-tensor ops, F.cosine_similarity on the channel view then the layer view (early return, a
host sync per test on a GPU), decoupled weight decay, SGDP's buffer aliasing. Device-agnostic;
`counts` tallies the projection decisions. Used by bench_torch_cpu.py and bench_torch_gpu.py.
"""
import math

import torch
import torch.nn.functional as F
from torch.optim import Optimizer


def _channel_view(x):
    return x.view(x.size(0), -1)


def _layer_view(x):
    return x.view(1, -1)


def _project(p, grad, perturb, delta, wd_ratio, eps, counts):
    """The official projection: channel view, then layer view; returns (perturb, wd)."""
    wd = 1.0
    expand_size = [-1] + [1] * (len(p.shape) - 1)
    for view, name in ((_channel_view, 'channel'), (_layer_view, 'layer')):
        cosine_sim = F.cosine_similarity(view(grad), view(p.data), dim=1, eps=eps).abs_()
        if cosine_sim.max() < delta / math.sqrt(view(p.data).size(1)):
            p_n = p.data / view(p.data).norm(dim=1).view(expand_size).add_(eps)
            perturb -= p_n * view(p_n * perturb).sum(dim=1).view(expand_size)
            wd = wd_ratio
            counts[name] += 1
            return perturb, wd
    counts['none'] += 1
    return perturb, wd


class OfficialAdamP(Optimizer):
    """AdamP as the official v0.3.0 computes it (docs/numerics.md#adamp)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 delta=0.1, wd_ratio=0.1, nesterov=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      delta=delta, wd_ratio=wd_ratio, nesterov=nesterov))
        self.counts = {'channel': 0, 'layer': 0, 'none': 0}

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group['params']:
                if p.grad is None:
                    continue
                grad = p.grad.data
                beta1, beta2 = group['betas']
                nesterov = group['nesterov']
                state = self.state[p]
                if len(state) == 0:
                    state['step'] = 0
                    state['exp_avg'] = torch.zeros_like(p.data)
                    state['exp_avg_sq'] = torch.zeros_like(p.data)
                exp_avg, exp_avg_sq = state['exp_avg'], state['exp_avg_sq']
                state['step'] += 1
                bias_correction1 = 1 - beta1 ** state['step']
                bias_correction2 = 1 - beta2 ** state['step']
                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = (exp_avg_sq.sqrt() / math.sqrt(bias_correction2)).add_(group['eps'])
                step_size = group['lr'] / bias_correction1
                if nesterov:
                    perturb = (beta1 * exp_avg + (1 - beta1) * grad) / denom
                else:
                    perturb = exp_avg / denom
                wd_ratio = 1.0
                if len(p.shape) > 1:
                    perturb, wd_ratio = _project(p, grad, perturb, group['delta'], group['wd_ratio'],
                                                 group['eps'], self.counts)
                if group['weight_decay'] > 0:
                    p.data.mul_(1 - group['lr'] * group['weight_decay'] * wd_ratio)
                p.data.add_(perturb, alpha=-step_size)


class OfficialSGDP(Optimizer):
    """SGDP as the official v0.3.0 computes it (docs/numerics.md#sgdp), buffer aliasing included."""

    def __init__(self, params, lr, momentum=0, dampening=0, weight_decay=0, nesterov=False,
                 eps=1e-8, delta=0.1, wd_ratio=0.1):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov, eps=eps,
                                      delta=delta, wd_ratio=wd_ratio))
        self.counts = {'channel': 0, 'layer': 0, 'none': 0}

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            momentum = group['momentum']
            dampening = group['dampening']
            nesterov = group['nesterov']
            for p in group['params']:
                if p.grad is None:
                    continue
                grad = p.grad.data
                state = self.state[p]
                if len(state) == 0:
                    state['momentum'] = torch.zeros_like(p.data)
                buf = state['momentum']
                buf.mul_(momentum).add_(grad, alpha=1 - dampening)
                d_p = grad + momentum * buf if nesterov else buf
                wd_ratio = 1.0
                if len(p.shape) > 1:
                    d_p, wd_ratio = _project(p, grad, d_p, group['delta'], group['wd_ratio'],
                                             group['eps'], self.counts)
                if group['weight_decay'] > 0:
                    p.data.mul_(1 - group['lr'] * group['weight_decay'] * wd_ratio / (1 - momentum))
                p.data.add_(d_p, alpha=-group['lr'])
