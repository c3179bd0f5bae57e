#!/usr/bin/python3
"""Reference fixtures from real PyTorch for adamp's torch.optim-style pieces.

    /usr/bin/python3 scripts/gen-torch-fixtures.py test/fixtures/torch

Run it with Debian's PyTorch (python3-torch 1.13.1, version string 1.13.0a0; python3-numpy for
the self-checks).  It writes, under OUT_DIR:

  optim/<case>.json + optim/<case>.f32   torch.optim.AdamW / torch.optim.SGD, float32, CPU,
                                         foreach=False, params and state after every step
  lr_scheduler.json                      torch.optim.lr_scheduler sequences (doubles) and
                                         state_dict round trips
  clip_grad_norm.json + .f32             torch.nn.utils.clip_grad_norm_ in float32

The .f32 files hold every float32 array back to back, little-endian; the JSON holds
[offset, length] pairs (in floats) into it, the same layout as test/fixtures/*.f32.
Schemas: test/fixtures/README.md.  Deterministic: re-running gives byte-identical files
(fixed seeds, one thread, no timestamps).

Besides recording what PyTorch does, the script re-derives every optimizer step and every
clip_grad_norm_ scaling elementwise in numpy float32 (with the fused multiply-adds PyTorch's
CPU kernels use, see emulate_* below) and stops if a single bit differs, and checks that every
scheduler state_dict, written as JSON and loaded into a fresh scheduler, continues the exact
same sequence.  GradScaler is not covered: torch._amp_update_scale_ has no CPU kernel in 1.13
(the script checks that and says so).
"""
import collections
import json
import math
import os
import struct
import sys
import warnings

import numpy as np
import torch
from torch.optim import lr_scheduler as lrs

F32 = np.float32


def f32_hex(x):
    """IEEE-754 bits of a float32 (a numpy float32 or a 0-dim float32 tensor keeps its NaN sign
    and payload; a Python float is rounded to float32 first)."""
    if torch.is_tensor(x):
        x = x.detach().numpy()
    if isinstance(x, (np.ndarray, np.float32)):
        return "0x%08x" % int(np.asarray(x, F32).reshape(1).view(np.uint32)[0])
    return "0x%08x" % struct.unpack("<I", struct.pack("<f", x))[0]


def num(x):
    """A double for JSON: non-finite values as the strings the existing fixtures use."""
    x = float(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return x


def cpu_capability():
    for line in torch.__config__.show().splitlines():
        if "CPU capability usage" in line:
            return line.split(":", 1)[1].strip()
    return "unknown"


META = {
    "generator": "scripts/gen-torch-fixtures.py",
    "command": "/usr/bin/python3 scripts/gen-torch-fixtures.py test/fixtures/torch",
    "torch_version": torch.__version__,
    "torch_package": "Debian python3-torch 1.13.1+dfsg (CPU build)",
    "cpu_capability": cpu_capability(),
}


class Blob:
    """float32 arrays back to back; put() returns [offset, length] in floats."""

    def __init__(self):
        self.chunks = []
        self.size = 0

    def put(self, t):
        a = np.ascontiguousarray(np.asarray(t, dtype=F32).reshape(-1)).astype("<f4")
        ref = [self.size, int(a.size)]
        self.chunks.append(a.tobytes())
        self.size += int(a.size)
        return ref

    def bytes(self):
        return b"".join(self.chunks)


def dump_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, separators=(",", ":"), allow_nan=False)
        f.write("\n")


def dump_cases_json(path, head, cases):
    """One case per line, so diffs stay readable."""
    with open(path, "w") as f:
        f.write("{" + json.dumps(head, separators=(",", ":"), allow_nan=False)[1:-1] + ',"cases":[\n')
        f.write(",\n".join(json.dumps(c, separators=(",", ":"), allow_nan=False) for c in cases))
        f.write("\n]}\n")


# ----------------------------------------------------------------------------------------------
# numpy float32 emulation of PyTorch 1.13's CPU kernels (AVX2 build).  Observed and checked
# bit for bit: add_(x, alpha=a) is fma(x, a, self); addcmul_(t1, t2, value=v) is
# fma(v*t1, t2, self); addcdiv_(t1, t2, value=v) is self + (v*t1)/t2 (no fusion); mul/div by
# a Python scalar round the scalar to float32 first and then do one float32 op.
# ----------------------------------------------------------------------------------------------


def fma(a, b, c):
    """float32 fma(a, b, c) = round(a*b + c) for float32 inputs.  The product is exact in
    double; the sum is rounded in extended precision (64-bit mantissa) and then to float32.
    (Double rounding can in principle differ from a true fma; the self-check would catch it.)"""
    ld = np.longdouble
    return (ld(np.asarray(a, F32)) * ld(np.asarray(b, F32)) + ld(np.asarray(c, F32))).astype(F32)


def emulate_adamw(p, g, m, v, step, lr, beta1, beta2, eps, wd):
    p = p * F32(1 - lr * wd)
    m = fma(g, F32(1 - beta1), m * F32(beta1))
    v = fma(F32(1 - beta2) * g, g, v * F32(beta2))
    bc1 = 1 - beta1 ** step
    bc2 = 1 - beta2 ** step
    step_size = lr / bc1
    denom = np.sqrt(v) / F32(math.sqrt(bc2)) + F32(eps)
    p = p + (F32(-step_size) * m) / denom
    return p, m, v


def emulate_sgd(p, g, buf, lr, momentum, dampening, wd, nesterov):
    d_p = g
    if wd != 0:
        d_p = fma(p, F32(wd), g)
    if momentum != 0:
        if buf is None:
            buf = d_p.copy()
        else:
            buf = fma(d_p, F32(1 - dampening), buf * F32(momentum))
        d_p = fma(buf, F32(momentum), d_p) if nesterov else buf
    p = fma(d_p, F32(-lr), p)
    return p, buf


def same_bits(a, b):
    a = np.asarray(a, F32).reshape(-1)
    b = np.asarray(b, F32).reshape(-1)
    return a.shape == b.shape and bool(np.all(a.view(np.uint32) == b.view(np.uint32)))


# ----------------------------------------------------------------------------------------------
# 1. Optimizers
# ----------------------------------------------------------------------------------------------

# conv weight, linear weight, bias, scalar (and a second small matrix for the group cases)
SHAPES4 = [[6, 2, 3, 3], [5, 8], [5], []]
SHAPES5 = SHAPES4 + [[3, 4]]

# grad kinds: r = randn, b = randn*1e3 (big), t = randn*1e-12 (tiny), z = zeros,
# h = randn with about half the entries exactly 0, n = None (no grad this step)
OPTIM_CASES = [
    {
        "name": "adamw_defaults",
        "optimizer": "adamw",
        "seed": 101,
        "shapes": SHAPES4,
        "hyperparameters": {},
        "grads": ["rrrr", "rrnr", "rnrr", "rrrn", "zrrr", "rrrr", "nrrr", "rrrr", "rrzr", "rrrr"],
        "note": "all defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 1e-2",
    },
    {
        "name": "adamw_custom_wd0",
        "optimizer": "adamw",
        "seed": 102,
        "shapes": SHAPES4,
        "hyperparameters": {"lr": 0.01, "betas": [0.8, 0.99], "eps": 1e-6, "weight_decay": 0.0},
        "grads": ["rrrr", "rrrr", "hrnr", "rrrr", "rnrh", "rrrr", "rrrr", "nrrr", "rrrr", "rrrr", "rhrr", "rrrr"],
    },
    {
        "name": "adamw_param_groups",
        "optimizer": "adamw",
        "seed": 103,
        "shapes": SHAPES5,
        "hyperparameters": {"lr": 0.002, "weight_decay": 0.05},
        "groups": [
            [[0, 1], {}],
            [[2, 3], {"weight_decay": 0.0, "betas": [0.5, 0.9]}],
            [[4], {"lr": 0.1, "eps": 0.001, "betas": [0.0, 0.99], "weight_decay": 0.2}],
        ],
        "grads": ["rrrnr", "rrrnr", "rnrnr", "rrrrr", "rrrrn", "rrnrr", "rrrrr", "nrrrr",
                  "rrrrr", "rrrzr", "rrrrr", "rrrrr", "rnrrr", "rrrrr", "rrrrr"],
        "note": "param 3 (the scalar) has no grad for steps 1-4, so its step count lags; "
                "group 3 has beta1 = 0",
    },
    {
        "name": "adamw_large_lr_scales",
        "optimizer": "adamw",
        "seed": 104,
        "shapes": SHAPES4,
        "hyperparameters": {"lr": 0.5, "betas": [0.95, 0.9995], "weight_decay": 0.3},
        "grads": ["btrz", "btrz", "rbtr", "trbr", "zzrb", "bbbb", "tttt", "rrrr", "hhhh", "nbnt",
                  "rrrr", "brtr", "tbrr", "rrrr", "zzzz", "rrrr", "bttb", "rrrr", "hrhr", "rrrr"],
        "note": "grads of very different magnitudes (1e3, 1e-12, exact zeros); 20 steps",
    },
    {
        "name": "sgd_plain",
        "optimizer": "sgd",
        "seed": 201,
        "shapes": SHAPES4,
        "hyperparameters": {"lr": 0.1},
        "grads": ["rrrr", "rnrr", "rrnr", "nrrr", "rrrn", "zrrr", "rrrr", "rrrr"],
        "note": "momentum 0: the state holds momentum_buffer None once a param has had a grad",
    },
    {
        "name": "sgd_weight_decay",
        "optimizer": "sgd",
        "seed": 202,
        "shapes": SHAPES4,
        "hyperparameters": {"lr": 0.05, "weight_decay": 0.01},
        "grads": ["rrrr", "rrrr", "nrrr", "rrrr", "zrzr", "rrrr", "rrnr", "rrrr"],
    },
    {
        "name": "sgd_momentum",
        "optimizer": "sgd",
        "seed": 203,
        "shapes": SHAPES4,
        "hyperparameters": {"lr": 0.05, "momentum": 0.9},
        "grads": ["rrrr", "rrrr", "rnrr", "rrrr", "nrrr", "rrnr", "rrrr", "rrrn", "rrrr", "zrrr",
                  "rrrr", "rrrr"],
    },
    {
        "name": "sgd_momentum_dampening_wd",
        "optimizer": "sgd",
        "seed": 204,
        "shapes": SHAPES4,
        "hyperparameters": {"lr": 0.02, "momentum": 0.8, "dampening": 0.3, "weight_decay": 0.001},
        "grads": ["rrnr", "rrrr", "rrrr", "rrrr", "nrrr", "rrrr", "rrrr", "rrrr", "rhrr", "rrrr",
                  "rrrr", "rrrr"],
        "note": "the buffer is created as a plain clone of d_p (no (1 - dampening) factor) at a "
                "param's first step; param 2 gets its first grad at step 2",
    },
    {
        "name": "sgd_nesterov_wd",
        "optimizer": "sgd",
        "seed": 205,
        "shapes": SHAPES4,
        "hyperparameters": {"lr": 0.01, "momentum": 0.9, "nesterov": True, "weight_decay": 0.0005},
        "grads": ["rrrr", "rrrr", "rrnr", "rrrr", "rnrr", "rrrr", "rrrr", "nrrr", "rrrr", "rrrr"],
    },
    {
        "name": "sgd_param_groups",
        "optimizer": "sgd",
        "seed": 206,
        "shapes": SHAPES5,
        "hyperparameters": {"lr": 0.03, "momentum": 0.9},
        "groups": [
            [[0], {"nesterov": True, "weight_decay": 0.0001}],
            [[1, 2], {"momentum": 0.0, "lr": 0.1}],
            [[3, 4], {"dampening": 0.5, "weight_decay": 0.02}],
        ],
        "grads": ["rrrrn", "rnrrn", "rrrrn", "rnrrn", "rrrrr", "rrrrr", "nrrrr", "rrnrr", "rrrrr",
                  "rrrnr", "rrrrr", "rbrrr", "rrrrr", "rrrrt", "rrrrr"],
        "note": "param 4 first gets a grad at step 5 (its buffer starts then); group 2 has "
                "momentum 0 (momentum_buffer None)",
    },
    {
        "name": "sgd_momentum_scales",
        "optimizer": "sgd",
        "seed": 207,
        "shapes": SHAPES4,
        "hyperparameters": {"lr": 0.001, "momentum": 0.99, "dampening": 0.1, "weight_decay": 0.1},
        "grads": ["btrz", "tbzr", "zzzz", "rrrr", "hbth", "rrrr", "bbbb", "tttt", "rrrr", "rrrr",
                  "nnnn", "rrrr"],
        "note": "grads of very different magnitudes and a step with no grads at all",
    },
]


def make_grad(kind, shape, gen):
    if kind == "n":
        return None
    if kind == "z":
        return torch.zeros(shape)
    g = torch.randn(shape, generator=gen)
    if kind == "b":
        return g * 1e3
    if kind == "t":
        return g * 1e-12
    if kind == "h":
        mask = torch.rand(shape, generator=gen) < 0.5
        return torch.where(mask, torch.zeros(shape), g)
    assert kind == "r", kind
    return g


def run_optim_case(spec):
    gen = torch.Generator().manual_seed(spec["seed"])
    torch.manual_seed(spec["seed"])
    shapes = spec["shapes"]
    params = [torch.nn.Parameter(torch.randn(s, generator=gen) * 0.5) for s in shapes]
    hp = dict(spec["hyperparameters"])
    kw = {k: (tuple(v) if k == "betas" else v) for k, v in hp.items()}
    groups_spec = spec.get("groups") or [[list(range(len(shapes))), {}]]
    covered = sorted(i for idx, _ in groups_spec for i in idx)
    assert covered == list(range(len(shapes))), spec["name"]
    groups = [dict({"params": [params[i] for i in idx]},
                   **{k: (tuple(v) if k == "betas" else v) for k, v in o.items()})
              for idx, o in groups_spec]
    kind = spec["optimizer"]
    cls = torch.optim.AdamW if kind == "adamw" else torch.optim.SGD
    opt = cls(groups, foreach=False, **kw)

    group_of = {}
    for gi, (idx, _) in enumerate(groups_spec):
        for i in idx:
            group_of[i] = gi

    def resolved(g):
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items() if k != "params"}

    blob = Blob()
    out = {
        "name": spec["name"],
        "source": "PyTorch %s torch.optim.%s, float32, CPU, foreach=False (scripts/gen-torch-fixtures.py)"
                  % (torch.__version__, cls.__name__),
        "optimizer": kind,
        "hyperparameters": hp,
        "groups": [{"params": idx, "options": o, "resolved": resolved(opt.param_groups[gi])}
                   for gi, (idx, o) in enumerate(groups_spec)],
        "params": [{"shape": list(s), "data": blob.put(p.detach().numpy())} for s, p in zip(shapes, params)],
        "grads": [],
        "steps": [],
    }
    if "note" in spec:
        out["note"] = spec["note"]

    # emulation state (numpy float32)
    ep = [p.detach().numpy().copy() for p in params]
    est = [None] * len(params)
    for si, pattern in enumerate(spec["grads"]):
        assert len(pattern) == len(params), (spec["name"], si)
        row = []
        for i, (k, p) in enumerate(zip(pattern, params)):
            g = make_grad(k, shapes[i], gen)
            p.grad = g
            row.append(None if g is None else blob.put(g.numpy()))
        out["grads"].append(row)
        opt.step()

        # emulate and compare bit for bit
        for i, p in enumerate(params):
            if p.grad is None:
                continue
            grp = opt.param_groups[group_of[i]]
            g = p.grad.numpy()
            if kind == "adamw":
                if est[i] is None:
                    est[i] = {"step": 0, "m": np.zeros_like(g), "v": np.zeros_like(g)}
                s = est[i]
                s["step"] += 1
                b1, b2 = grp["betas"]
                ep[i], s["m"], s["v"] = emulate_adamw(ep[i], g, s["m"], s["v"], s["step"], grp["lr"], b1, b2,
                                                      grp["eps"], grp["weight_decay"])
            else:
                buf = None if est[i] is None else est[i]["buf"]
                ep[i], buf = emulate_sgd(ep[i], g, buf, grp["lr"], grp["momentum"], grp["dampening"],
                                         grp["weight_decay"], grp["nesterov"])
                est[i] = {"buf": buf}

        srow = []
        for i, p in enumerate(params):
            where = "%s step %d param %d" % (spec["name"], si + 1, i)
            if not same_bits(ep[i], p.detach().numpy()):
                raise SystemExit("emulation differs from torch: %s param" % where)
            st = opt.state[p] if p in opt.state else {}
            if len(st) == 0:
                assert est[i] is None, where
                state = None
            elif kind == "adamw":
                step_t = st["step"]
                assert torch.is_tensor(step_t) and step_t.dtype == torch.float32 and step_t.dim() == 0, where
                assert step_t.item() == est[i]["step"], where
                assert same_bits(est[i]["m"], st["exp_avg"].numpy()), where
                assert same_bits(est[i]["v"], st["exp_avg_sq"].numpy()), where
                state = {"step": int(step_t.item()), "exp_avg": blob.put(st["exp_avg"].numpy()),
                         "exp_avg_sq": blob.put(st["exp_avg_sq"].numpy())}
            else:
                assert set(st.keys()) == {"momentum_buffer"}, where
                buf = st["momentum_buffer"]
                if buf is None:
                    assert est[i]["buf"] is None, where
                    state = {"momentum_buffer": None}
                else:
                    assert same_bits(est[i]["buf"], buf.numpy()), where
                    state = {"momentum_buffer": blob.put(buf.numpy())}
            srow.append({"data": blob.put(p.detach().numpy()), "state": state})
        out["steps"].append({"step": si + 1, "params": srow})
    return out, blob


# ----------------------------------------------------------------------------------------------
# 2. LR schedulers
# ----------------------------------------------------------------------------------------------

# LambdaLR factors, by name.  The expression is what runs (e = last_epoch, an int).
LAMBDAS = {
    "linear_warmup_10": "min(1.0, (e + 1) / 10)",
    "inverse_sqrt": "1.0 / math.sqrt(e + 1)",
    "halve_every_10": "0.5 ** (e // 10)",
    "exp_0_97": "0.97 ** e",
    "warmup_5_then_inverse_sqrt": "(e + 1) / 5 if e < 5 else math.sqrt(5 / (e + 1))",
}
LAMBDA_FNS = {k: eval("lambda e: " + v, {"math": math}) for k, v in LAMBDAS.items()}  # noqa: S307 (own constants)

SGD_2 = {"name": "SGD", "defaults": {"momentum": 0.9}, "groups": [{"lr": 0.1}, {"lr": 0.02}]}
ADAMW_2 = {"name": "AdamW", "defaults": {"betas": [0.9, 0.999]}, "groups": [{"lr": 0.001}, {"lr": 0.004}]}


def sched(t, **args):
    return {"type": t, "args": args}


def case(name, spec, steps, resume_at, optimizer=SGD_2, note=None):
    c = {"name": name, "optimizer": optimizer, "scheduler": spec, "steps": steps, "resumeAt": resume_at}
    if note:
        c["note"] = note
    return c


ONE = "OneCycleLR"
SCHED_CASES = [
    case("cosine_T50", sched("CosineAnnealingLR", T_max=50), 50, 20),
    case("cosine_T20_eta_min_past_T_max", sched("CosineAnnealingLR", T_max=20, eta_min=0.001), 100, 37,
         note="goes past T_max: the lr climbs back up (period 2*T_max); at last_epoch = T_max+1 "
              "(mod 2*T_max) get_lr takes its special branch"),
    case("cosine_T7_odd", sched("CosineAnnealingLR", T_max=7, eta_min=0.0005), 60, 9),
    case("step_10_gamma_0.1", sched("StepLR", step_size=10, gamma=0.1), 60, 25),
    case("step_7_gamma_0.5", sched("StepLR", step_size=7, gamma=0.5), 50, 14),
    case("step_1_gamma_0.9", sched("StepLR", step_size=1, gamma=0.9), 50, 5),
    case("multistep_10_25_40", sched("MultiStepLR", milestones=[10, 25, 40], gamma=0.1), 60, 30),
    case("multistep_repeated_milestone", sched("MultiStepLR", milestones=[10, 10, 30], gamma=0.5), 50, 10,
         note="a milestone listed twice decays by gamma**2 there (milestones is a Counter)"),
    case("exponential_0.95", sched("ExponentialLR", gamma=0.95), 100, 33),
    case("exponential_0.7", sched("ExponentialLR", gamma=0.7), 50, 20),
    case("linear_defaults", sched("LinearLR"), 20, 3, note="start_factor 1/3, end_factor 1, total_iters 5"),
    case("linear_warmup_0.1_10", sched("LinearLR", start_factor=0.1, end_factor=1.0, total_iters=10), 30, 4),
    case("linear_decay_start_gt_end", sched("LinearLR", start_factor=1.0, end_factor=0.1, total_iters=20), 40, 12),
    case("linear_to_zero", sched("LinearLR", start_factor=0.5, end_factor=0.0, total_iters=10), 20, 6,
         note="reaches exactly 0 at total_iters and stays there"),
    case("lambda_linear_warmup_10", sched("LambdaLR", lr_lambda="linear_warmup_10"), 40, 6),
    case("lambda_per_group", sched("LambdaLR", lr_lambda=["linear_warmup_10", "inverse_sqrt"]), 60, 15,
         note="one lambda per param group"),
    case("lambda_halve_every_10", sched("LambdaLR", lr_lambda="halve_every_10"), 50, 19),
    case("lambda_exp_and_warmup_inverse_sqrt",
         sched("LambdaLR", lr_lambda=["exp_0_97", "warmup_5_then_inverse_sqrt"]), 80, 40),
    case("onecycle_sgd_cos", sched(ONE, max_lr=[0.5, 0.1], total_steps=100), 100, 40,
         note="defaults: pct_start 0.3, cos, cycle_momentum, momentum 0.95 -> 0.85 -> 0.95, div_factor 25, "
              "final_div_factor 1e4"),
    case("onecycle_sgd_linear", sched(ONE, max_lr=0.2, total_steps=60, pct_start=0.25, anneal_strategy="linear"),
         60, 20),
    case("onecycle_sgd_three_phase", sched(ONE, max_lr=[0.5, 0.1], total_steps=90, three_phase=True), 90, 30),
    case("onecycle_sgd_three_phase_linear",
         sched(ONE, max_lr=0.3, total_steps=80, pct_start=0.2, anneal_strategy="linear", three_phase=True,
               base_momentum=0.8, max_momentum=0.9), 80, 50),
    case("onecycle_sgd_no_cycle_momentum",
         sched(ONE, max_lr=[0.4, 0.08], total_steps=50, cycle_momentum=False, div_factor=10.0,
               final_div_factor=100.0), 50, 10,
         note="cycle_momentum False: momentum is left alone (stays 0.9)"),
    case("onecycle_sgd_custom",
         sched(ONE, max_lr=[1.0, 0.25], total_steps=120, pct_start=0.4, base_momentum=0.7, max_momentum=0.99,
               div_factor=5.0, final_div_factor=50.0), 120, 77),
    case("onecycle_adamw_cos", sched(ONE, max_lr=[0.01, 0.003], total_steps=100), 100, 50, optimizer=ADAMW_2,
         note="cycles betas[0]; betas[1] is kept"),
    case("onecycle_adamw_three_phase_linear",
         sched(ONE, max_lr=0.01, total_steps=70, pct_start=0.3, anneal_strategy="linear", three_phase=True,
               base_momentum=0.85, max_momentum=0.95), 70, 25, optimizer=ADAMW_2),
    case("onecycle_adamw_no_cycle_momentum",
         sched(ONE, max_lr=[0.01, 0.02], total_steps=50, cycle_momentum=False), 50, 20, optimizer=ADAMW_2),
    case("sequential_warmup_cosine",
         sched("SequentialLR", schedulers=[sched("LinearLR", start_factor=0.1, total_iters=5),
                                           sched("CosineAnnealingLR", T_max=45, eta_min=0.0001)],
               milestones=[5]), 60, 17),
    case("sequential_linear_step_exponential",
         sched("SequentialLR", schedulers=[sched("LinearLR", start_factor=0.25, total_iters=4),
                                           sched("StepLR", step_size=10, gamma=0.5),
                                           sched("ExponentialLR", gamma=0.9)],
               milestones=[4, 30]), 60, 29),
    case("sequential_lambda_multistep",
         sched("SequentialLR", schedulers=[sched("LambdaLR", lr_lambda="linear_warmup_10"),
                                           sched("MultiStepLR", milestones=[5, 15], gamma=0.1)],
               milestones=[10]), 40, 12),
    case("sequential_exponential_lambda",
         sched("SequentialLR", schedulers=[sched("ExponentialLR", gamma=0.8),
                                           sched("LambdaLR", lr_lambda=["inverse_sqrt", "halve_every_10"])],
               milestones=[8]), 50, 8,
         note="the second scheduler has no closed form: at the milestone step(0) calls its get_lr at epoch 0"),
]


def build_optimizer(o):
    params = [torch.nn.Parameter(torch.zeros(2)) for _ in o["groups"]]
    groups = [dict({"params": [p]}, **g) for p, g in zip(params, o["groups"])]
    d = {k: (tuple(v) if k == "betas" else v) for k, v in o["defaults"].items()}
    cls = getattr(torch.optim, o["name"])
    return cls(groups, foreach=False, **d)


def build_scheduler(opt, spec):
    a = dict(spec["args"])
    t = spec["type"]
    if t == "LambdaLR":
        lam = a["lr_lambda"]
        a["lr_lambda"] = [LAMBDA_FNS[n] for n in lam] if isinstance(lam, list) else LAMBDA_FNS[lam]
    if t == "SequentialLR":
        a["schedulers"] = [build_scheduler(opt, s) for s in a["schedulers"]]
    return getattr(lrs, t)(opt, **a)


def to_jsonable(x):
    if isinstance(x, collections.Counter):
        return {str(k): x[k] for k in sorted(x)}
    if isinstance(x, dict):
        return {k: to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    if callable(x):  # OneCycleLR.anneal_func, a bound method
        return x.__name__
    if isinstance(x, float):
        return num(x)
    assert x is None or isinstance(x, (bool, int, str)), type(x)
    return x


def from_jsonable(sd, s):
    """A state_dict read back from JSON, ready for s.load_state_dict (s: a fresh scheduler of the
    same configuration)."""
    sd = json.loads(json.dumps(sd))
    if isinstance(s, lrs.MultiStepLR):
        sd["milestones"] = collections.Counter({int(k): v for k, v in sd["milestones"].items()})
    if isinstance(s, lrs.OneCycleLR):
        sd["anneal_func"] = getattr(s, sd["anneal_func"])
    if isinstance(s, lrs.SequentialLR):
        sd["_schedulers"] = [from_jsonable(x, sub) for x, sub in zip(sd["_schedulers"], s._schedulers)]
    return sd


def group_snapshot(opt):
    return [to_jsonable({k: v for k, v in g.items() if k != "params"}) for g in opt.param_groups]


def momentum_key(opt, sch):
    if isinstance(sch, lrs.OneCycleLR) and sch.cycle_momentum:
        return "betas[0]" if sch.use_beta1 else "momentum"
    return None


def read_row(opt, sch, key, check=True):
    lr = list(sch.get_last_lr())
    if check:
        assert lr == [g["lr"] for g in opt.param_groups]
    mom = None
    if key == "momentum":
        mom = [g["momentum"] for g in opt.param_groups]
    elif key == "betas[0]":
        mom = [g["betas"][0] for g in opt.param_groups]
    return lr, mom


def run_sched_case(c):
    opt = build_optimizer(c["optimizer"])
    sch = build_scheduler(opt, c["scheduler"])
    key = momentum_key(opt, sch)
    groups_after_init = group_snapshot(opt)
    lr_rows, mom_rows = [], []
    resume = None
    for k in range(c["steps"] + 1):
        if k > 0:
            opt.step()  # no grads: a no-op, called so the scheduler sees the usual order
            sch.step()
        lr, mom = read_row(opt, sch, key)
        lr_rows.append(lr)
        mom_rows.append(mom)
        if k == c["resumeAt"]:
            resume = {"atStep": k, "lastEpoch": sch.last_epoch, "stateDict": to_jsonable(sch.state_dict()),
                      "optimizerGroups": group_snapshot(opt)}
    out = {
        "name": c["name"],
        "optimizer": c["optimizer"],
        "scheduler": c["scheduler"],
        "steps": c["steps"],
        "groupsAfterInit": groups_after_init,
        "lastEpoch": sch.last_epoch,
        "lr": [[num(v) for v in r] for r in lr_rows],
        "momentumKey": key,
        "momentum": [[num(v) for v in r] for r in mom_rows] if key else None,
    }
    if c.get("note"):
        out["note"] = c["note"]
    if isinstance(sch, lrs.OneCycleLR):
        # step() may run total_steps times; the last of them (last_epoch == total_steps) lies
        # one step past the schedule's end; one more raises.
        assert c["steps"] == sch.total_steps
        try:
            sch.step()
            raise SystemExit("%s: expected OneCycleLR to raise past total_steps" % c["name"])
        except ValueError:
            out["raisesOnStepCall"] = c["steps"] + 1

    # state_dict round trip through JSON, into a fresh optimizer + scheduler
    k = resume["atStep"]

    def continue_fresh(restore_groups):
        o2 = build_optimizer(c["optimizer"])
        s2 = build_scheduler(o2, c["scheduler"])
        s2.load_state_dict(from_jsonable(resume["stateDict"], s2))
        if restore_groups:
            for g, saved in zip(o2.param_groups, resume["optimizerGroups"]):
                g.update({kk: (tuple(v) if kk == "betas" else v) for kk, v in saved.items()})
        # without the optimizer's groups, get_last_lr() (restored) and the groups' lr disagree
        rows = [read_row(o2, s2, key, check=restore_groups)]
        for _ in range(c["steps"] - k):
            o2.step()
            s2.step()
            rows.append(read_row(o2, s2, key))
        want = list(zip(lr_rows[k:], mom_rows[k:]))
        # (the restored row itself, the rows that stepping produces)
        return rows[0] == want[0], rows[1:] == want[1:]

    if continue_fresh(True) != (True, True):
        raise SystemExit("%s: state_dict round trip does not continue the sequence" % c["name"])
    resume["schedulerOnlyContinues"] = continue_fresh(False)[1]
    out["resume"] = resume
    return out


# ----------------------------------------------------------------------------------------------
# 3. clip_grad_norm_
# ----------------------------------------------------------------------------------------------

CLIP_SHAPES = [[6, 2, 3, 3], [5, 8], [5], [], [7]]
# grad kinds as for the optimizers, plus: i = randn with one +inf, q = randn with one NaN,
# u = 1e-30 (float32 sum of squares underflows), o = 1e30 (overflows)
CLIP_CASES = [
    {"name": "l2_clipped", "max_norm": 1.0, "norm_type": 2.0, "grads": "rrrrn"},
    {"name": "l2_clipped_half_zero", "max_norm": 0.5, "norm_type": 2.0, "grads": "hzrrr"},
    {"name": "l2_not_clipped_large_max_norm", "max_norm": 1000.0, "norm_type": 2.0, "grads": "rrrrn",
     "note": "clip_coef clamped to 1.0; grads are still multiplied by it (unchanged)"},
    {"name": "l2_max_norm_equals_norm", "max_norm": "norm", "norm_type": 2.0, "grads": "rrrrr",
     "note": "max_norm is the returned total norm itself: the coef max_norm/(norm+1e-6) is just below 1"},
    {"name": "l2_all_zero", "max_norm": 1.0, "norm_type": 2.0, "grads": "zzzzn",
     "note": "norm 0: coef max_norm/1e-6 is clamped to 1"},
    {"name": "l2_big_grads", "max_norm": 5.0, "norm_type": 2.0, "grads": "brbrt"},
    {"name": "l2_int_max_norm", "max_norm": 2, "norm_type": 2, "grads": "rnrnr",
     "note": "int max_norm / norm_type are converted with float()"},
    {"name": "l2_single_grad", "max_norm": 0.3, "norm_type": 2.0, "grads": "nrnnn"},
    {"name": "l2_no_grads", "max_norm": 1.0, "norm_type": 2.0, "grads": "nnnnn",
     "note": "no grads: returns torch.tensor(0.), touches nothing"},
    {"name": "inf_clipped", "max_norm": 0.5, "norm_type": "inf", "grads": "rrrrn"},
    {"name": "inf_not_clipped", "max_norm": 100.0, "norm_type": "inf", "grads": "rrnrr"},
    {"name": "inf_single_grad", "max_norm": 0.1, "norm_type": "inf", "grads": "nnrnn",
     "note": "a single grad: norms[0] is used directly (no stack/max)"},
    {"name": "inf_with_zero_grads", "max_norm": 1.0, "norm_type": "inf", "grads": "zbzrz"},
    {"name": "l2_nonfinite_inf", "max_norm": 1.0, "norm_type": 2.0, "grads": "rirrr",
     "note": "error_if_nonfinite False: norm inf, coef 0, finite grads become 0 and the inf becomes NaN"},
    {"name": "l2_nonfinite_nan", "max_norm": 1.0, "norm_type": 2.0, "grads": "rrqrr",
     "note": "error_if_nonfinite False: norm NaN, clamp keeps NaN, every grad becomes NaN"},
    {"name": "inf_nonfinite_inf", "max_norm": 1.0, "norm_type": "inf", "grads": "rrrir"},
    {"name": "l2_float32_underflow", "max_norm": 1.0, "norm_type": 2.0, "grads": "uuuuu",
     "note": "float32 artifact: the per-tensor sums of squares underflow to 0 (norm 0, grads unchanged); "
             "a double accumulator would give the finite totalNormF64"},
    {"name": "l2_float32_overflow", "max_norm": 1.0, "norm_type": 2.0, "grads": "roooo",
     "note": "float32 artifact: the sums of squares overflow to inf, so every grad is scaled by 0 "
             "(a double accumulator would give the finite totalNormF64)"},
]


def make_clip_grad(kind, shape, gen):
    if kind in "irzbthn":
        g = make_grad(kind if kind != "i" else "r", shape, gen)
        if kind == "i":
            g.view(-1)[min(3, g.numel() - 1)] = float("inf")
        return g
    if kind == "q":
        g = torch.randn(shape, generator=gen)
        g.view(-1)[min(2, g.numel() - 1)] = float("nan")
        return g
    if kind == "u":
        return torch.full(shape, 1e-30)
    if kind == "o":
        return torch.full(shape, 1e30)
    raise ValueError(kind)


def run_clip_case(spec, seed, blob):
    gen = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.zeros(s)) for s in CLIP_SHAPES]
    grads_in = []
    for k, p, s in zip(spec["grads"], params, CLIP_SHAPES):
        g = make_clip_grad(k, s, gen)
        p.grad = g
        grads_in.append(None if g is None else g.clone())
    max_norm = spec["max_norm"]
    norm_type = float("inf") if spec["norm_type"] == "inf" else spec["norm_type"]
    if max_norm == "norm":
        probe = [torch.nn.Parameter(torch.zeros(s)) for s in CLIP_SHAPES]
        for q, g in zip(probe, grads_in):
            q.grad = None if g is None else g.clone()
        max_norm = torch.nn.utils.clip_grad_norm_(probe, 1.0, norm_type).item()
    total = torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type, error_if_nonfinite=False)
    assert total.dtype == torch.float32 and total.dim() == 0
    t = total.item()

    # the same norm in float64 (from the same float32 grads)
    present = [g.double() for g in grads_in if g is not None]
    if present:
        if norm_type == float("inf"):
            t64 = max(g.abs().max().item() for g in present)
        else:
            t64 = torch.norm(torch.stack([torch.norm(g, norm_type) for g in present]), norm_type).item()
    else:
        t64 = 0.0

    # coef as torch forms it: (max_norm / (total + 1e-6)) is total.add(1e-6).reciprocal() * max_norm
    # in float32, clamped at 1.0; every grad is multiplied by it
    coef = None
    if present:
        # torch's own coef (the same expression clip_grad_norm_ evaluates), and its float32
        # emulation: total.add(1e-6).reciprocal() * max_norm, clamped at 1.0
        coef = torch.clamp(float(max_norm) / (total + 1e-6), max=1.0)
        tn = total.detach().numpy().reshape(1)[0]
        with np.errstate(all="ignore"):
            c = (F32(1) / (tn + F32(1e-6))) * F32(float(max_norm))
            c = c if np.isnan(c) else min(c, F32(1.0))
        assert same_bits(c, coef.numpy()) or (np.isnan(c) and torch.isnan(coef).item()), spec["name"]
        for g0, p in zip(grads_in, params):
            if g0 is not None:
                with np.errstate(all="ignore"):
                    want = g0.numpy() * coef.numpy()
                if not same_bits(want, p.grad.numpy()):
                    raise SystemExit("%s: clip emulation differs from torch" % spec["name"])
    out = {
        "name": spec["name"],
        "maxNorm": float(max_norm) if spec["max_norm"] == "norm" else max_norm,
        "normType": "inf" if spec["norm_type"] == "inf" else spec["norm_type"],
        "errorIfNonfinite": False,
        "params": [{"shape": list(s)} for s in CLIP_SHAPES],
        "gradsIn": [None if g is None else blob.put(g.numpy()) for g in grads_in],
        "gradsOut": [None if p.grad is None else blob.put(p.grad.numpy()) for p in params],
        "totalNorm": num(t),
        "totalNormBits": f32_hex(total),
        "totalNormF64": num(t64),
        "clipCoef": None if coef is None else num(coef.item()),
        "clipCoefBits": None if coef is None else f32_hex(coef),
    }
    if spec["max_norm"] == "norm":
        out["maxNormIsTotalNorm"] = True
    if "note" in spec:
        out["note"] = spec["note"]
    return out


# ----------------------------------------------------------------------------------------------


def check_grad_scaler():
    s = torch.tensor([65536.0])
    tracker = torch.tensor([0], dtype=torch.int32)
    found = torch.tensor([0.0])
    try:
        torch._amp_update_scale_(s, tracker, found, 2.0, 0.5, 3)
        return True
    except (NotImplementedError, RuntimeError):
        return False


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    out_dir = sys.argv[1]
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    os.makedirs(os.path.join(out_dir, "optim"), exist_ok=True)

    for spec in OPTIM_CASES:
        case_out, blob = run_optim_case(spec)
        base = os.path.join(out_dir, "optim", spec["name"])
        with open(base + ".f32", "wb") as f:
            f.write(blob.bytes())
        dump_json(base + ".json", dict(case_out, meta=META))
        print("optim/%s: %d steps, %d floats (bit-exact vs float32 emulation)"
              % (spec["name"], len(spec["grads"]), blob.size))

    sched_out = [run_sched_case(c) for c in SCHED_CASES]
    dump_cases_json(os.path.join(out_dir, "lr_scheduler.json"), {"meta": META, "lambdas": LAMBDAS}, sched_out)
    print("lr_scheduler.json: %d cases (every state_dict round trip continues exactly)" % len(sched_out))

    blob = Blob()
    clip_out = [run_clip_case(s, 300 + i, blob) for i, s in enumerate(CLIP_CASES)]
    with open(os.path.join(out_dir, "clip_grad_norm.f32"), "wb") as f:
        f.write(blob.bytes())
    dump_cases_json(os.path.join(out_dir, "clip_grad_norm.json"), {"meta": META}, clip_out)
    print("clip_grad_norm.json: %d cases, %d floats" % (len(clip_out), blob.size))

    if check_grad_scaler():
        print("note: torch._amp_update_scale_ runs on CPU here, but GradScaler fixtures are not generated")
    else:
        print("GradScaler: skipped (torch._amp_update_scale_ has no CPU kernel in torch %s)" % torch.__version__)


if __name__ == "__main__":
    main()
