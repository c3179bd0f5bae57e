#!/usr/bin/python3
"""Mixed-precision reference fixtures from real PyTorch (docs/mixed-precision.md#parity).

    /usr/bin/python3 scripts/gen-mixed-fixtures.py test/fixtures/mixed

Run it with Debian's PyTorch (python3-torch 1.13.1, version string 1.13.0a0). It writes, under
OUT_DIR:

  <case>.json        one optimizer run on bfloat16 or float16 params: the reference is the
                     official AdamP / SGDP (scripts/official_torch.py) or torch.optim.AdamW / SGD
                     (float32, CPU, foreach=False) stepping
                       - with master weights: a float32 master copy of each 16-bit param, the
                         param then master.to(dtype) (round to nearest even) after every step;
                       - without: the 16-bit param widened to float32 at every step, stepped,
                         and rounded back;
                     on grads float32(g) * invScale, where g is the scaled grad as the backward
                     pass gives it (16-bit, or float32 for the float32-grad cases) and
                     invScale = float32(1 / scale) (PyTorch: scale.double().reciprocal().float()).
                     With a loss scaler, a step whose scaled grads hold Infinity/NaN is skipped
                     (nothing changes) and the scale backs off.
  conversions.json   float32 values (edge cases, random bit patterns, values across float16's
                     range), their bfloat16 / float16 bits from tensor.to(dtype), and those
                     widened back with .float().

Loss scaling: torch.cuda.amp.GradScaler needs CUDA (in 1.13 it disables itself without it), and
torch._amp_update_scale_ / torch._amp_foreach_non_finite_check_and_unscale_ have no CPU kernel in
1.13 (the script checks that and says so). Their documented semantics are emulated here in float32:
found_inf = any scaled grad is not finite; on found_inf scale = f32(scale * backoff_factor) and the
growth tracker restarts; else after growth_interval clean steps in a row
scale = f32(scale * growth_factor) if finite.

All values are stored as bits: 16-bit params and grads as integers 0..65535, float32 arrays as
their uint32 bit patterns. Deterministic: fixed seeds, one thread, no timestamps; running it again
gives byte-identical files.
"""
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from official_torch import OfficialAdamP, OfficialSGDP  # noqa: E402

DT = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def has_cpu_kernel(fn):
    try:
        fn()
        return True
    except (RuntimeError, NotImplementedError):
        return False


def cpu_amp_kernels():
    s = torch.tensor(4.0)
    t = torch.tensor(0, dtype=torch.int32)
    f = torch.tensor(0.0)
    upd = has_cpu_kernel(lambda: torch._amp_update_scale_(s, t, f, 2.0, 0.5, 2000))
    uns = has_cpu_kernel(lambda: torch._amp_foreach_non_finite_check_and_unscale_([torch.ones(2)], f, torch.tensor(1.0)))
    return upd, uns


def bits16(t):
    return [int(x) for x in t.contiguous().view(torch.int16).numpy().astype(np.uint16).reshape(-1)]


def bits32(t):
    return [int(x) for x in t.detach().contiguous().float().numpy().view(np.uint32).reshape(-1)]


def from_bits16(bits, dtype):
    return torch.from_numpy(np.array(bits, dtype=np.uint16).view(np.int16)).view(DT[dtype])


def f32(x):
    return float(np.float32(x))


class Scaler:
    """torch.cuda.amp.GradScaler's update, emulated in float32 (see the module docstring)."""

    def __init__(self, init_scale, growth_factor, backoff_factor, growth_interval):
        self.scale = f32(init_scale)
        self.growth_factor = growth_factor
        self.backoff_factor = backoff_factor
        self.growth_interval = growth_interval
        self.tracker = 0

    def inv_scale(self):
        return torch.tensor(self.scale, dtype=torch.float64).reciprocal().float()

    def update(self, found_inf):
        if found_inf:
            self.scale = f32(self.scale * self.backoff_factor)
            self.tracker = 0
        else:
            successful = self.tracker + 1
            if successful == self.growth_interval:
                grown = f32(self.scale * self.growth_factor)
                if np.isfinite(grown):
                    self.scale = grown
                self.tracker = 0
            else:
                self.tracker = successful


def make_params(gen, specs, dtype):
    """Initial 16-bit params; params named '*.scale_inv' get grads orthogonal to them per channel (the projection fires)."""
    out = []
    for name, shape in specs:
        w = torch.randn(shape, generator=gen) * 0.5
        out.append((name, shape, w.to(DT[dtype])))
    return out


def true_grads(gen, params, steps):
    gs = []
    for _ in range(steps):
        row = []
        for name, shape, w16 in params:
            g = torch.randn(shape, generator=gen)
            if name.endswith("scale_inv") and len(shape) > 1:
                w = w16.float().view(shape[0], -1)
                gv = g.view(shape[0], -1)
                gv -= (gv * w).sum(1, keepdim=True) / (w * w).sum(1, keepdim=True) * w
            row.append(g)
        gs.append(row)
    return gs


TORCH_OPT = {
    "adamp": lambda ps, o: OfficialAdamP(ps, **o),
    "sgdp": lambda ps, o: OfficialSGDP(ps, **o),
    "adamw": lambda ps, o: torch.optim.AdamW(ps, foreach=False, **o),
    "sgd": lambda ps, o: torch.optim.SGD(ps, foreach=False, **o),
}
SLOTS = {"adamp": ["exp_avg", "exp_avg_sq"], "sgdp": ["momentum"], "adamw": ["exp_avg", "exp_avg_sq"], "sgd": ["momentum_buffer"]}
CAMEL = {"weight_decay": "weightDecay", "wd_ratio": "wdRatio"}


def run_case(c):
    gen = torch.Generator().manual_seed(c["seed"])
    dtype = c["dtype"]
    params = make_params(gen, c.get("params", SHAPES), dtype)
    grads = true_grads(gen, params, c["steps"])
    for (k, idx) in c.get("inject", []):  # an Infinity/NaN in a grad of this step (before scaling)
        grads[k][idx[0]].view(-1)[idx[1]] = float(idx[2])
    master = c["master"]
    p16 = [w16.clone() for _, _, w16 in params]
    work = [torch.nn.Parameter(w.float().clone()) for w in p16]
    opt = TORCH_OPT[c["optimizer"]](work, dict(c["options"]))
    sc = Scaler(**c["scaler"]) if c["scaler"] else None
    out_steps = []
    for k in range(c["steps"]):
        scale = sc.scale if sc else 1.0
        # the scaled grad as backward gives it, in the grad dtype
        if c["grad_dtype"] == "float32":
            gs = [(g * scale).float() for g in grads[k]]
            g_bits = [bits32(g) for g in gs]
        else:
            gs = [(g * scale).to(DT[dtype]) for g in grads[k]]
            g_bits = [bits16(g) for g in gs]
        found_inf = sc is not None and any(not bool(torch.isfinite(g.float()).all()) for g in gs)
        if not found_inf:
            inv = sc.inv_scale() if sc else torch.tensor(1.0)
            for i, w in enumerate(work):
                if not master:
                    w.data.copy_(p16[i].float())
                w.grad = gs[i].float() * inv if sc else gs[i].float().clone()
            opt.step()
            for i, w in enumerate(work):
                p16[i] = w.data.to(DT[dtype])
        if sc:
            sc.update(found_inf)
        state = []
        for w in work:
            st = opt.state[w]
            if len(st) == 0:
                state.append(None)
                continue
            e = {"slots": {s: bits32(st[s]) for s in SLOTS[c["optimizer"]]}}
            if "step" in st:
                e["step"] = int(st["step"])
            state.append(e)
        out_steps.append({
            "grads": g_bits,
            "skipped": found_inf,
            "params": [bits16(p) for p in p16],
            "master": [bits32(w.data) for w in work] if master else None,
            "state": state,
            "scaleAfter": sc.scale if sc else None,
            "growthTrackerAfter": sc.tracker if sc else None,
        })
    options = {CAMEL.get(k, k): (list(v) if isinstance(v, tuple) else v) for k, v in c["options"].items()}
    return {
        "optimizer": c["optimizer"],
        "dtype": dtype,
        "gradDtype": c["grad_dtype"],
        "masterWeights": master,
        "options": options,
        "scaler": ({"initScale": c["scaler"]["init_scale"], "growthFactor": c["scaler"]["growth_factor"],
                    "backoffFactor": c["scaler"]["backoff_factor"], "growthInterval": c["scaler"]["growth_interval"]}
                   if c["scaler"] else None),
        "params": [{"name": n, "shape": list(s), "data": bits16(w)} for n, s, w in params],
        "steps": out_steps,
    }


SHAPES = [("conv.scale_inv", (4, 3, 3, 3)), ("fc.weight", (5, 8)), ("fc.bias", (5,))]
SCALER = dict(init_scale=2.0 ** 16, growth_factor=2.0, backoff_factor=0.5, growth_interval=3)
CASES = {
    # float16 grads of magnitude ~1 times 65536 overflow: the first steps back off by themselves.
    "adamp_f16_master_scaler": dict(optimizer="adamp", dtype="float16", grad_dtype="float16", master=True, seed=1, steps=8,
                                    options=dict(lr=0.01, weight_decay=0.01), scaler=SCALER),
    "adamp_bf16_master_scaler": dict(optimizer="adamp", dtype="bfloat16", grad_dtype="bfloat16", master=True, seed=2, steps=8,
                                     options=dict(lr=0.01, weight_decay=0.01, nesterov=True),
                                     scaler=dict(SCALER, init_scale=1024.0), inject=[(2, (1, 7, "inf")), (5, (0, 3, "nan"))]),
    "adamp_bf16_nomaster": dict(optimizer="adamp", dtype="bfloat16", grad_dtype="bfloat16", master=False, seed=3, steps=5,
                                options=dict(lr=0.05, weight_decay=0.1), scaler=None),
    "sgdp_bf16_master_f32grad": dict(optimizer="sgdp", dtype="bfloat16", grad_dtype="float32", master=True, seed=4, steps=6,
                                     options=dict(lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True), scaler=None),
    "sgdp_f16_nomaster_scaler": dict(optimizer="sgdp", dtype="float16", grad_dtype="float16", master=False, seed=5, steps=7,
                                     options=dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=1e-4), scaler=SCALER),
    "adamw_bf16_master_scaler": dict(optimizer="adamw", dtype="bfloat16", grad_dtype="bfloat16", master=True, seed=6, steps=8,
                                     options=dict(lr=1e-3, weight_decay=0.01), scaler=dict(SCALER, init_scale=8.0, growth_interval=2),
                                     inject=[(3, (2, 1, "-inf"))]),
    "adamw_f16_nomaster": dict(optimizer="adamw", dtype="float16", grad_dtype="float16", master=False, seed=7, steps=5,
                               options=dict(lr=0.01, weight_decay=0.01), scaler=None),
    "sgd_f16_master_scaler": dict(optimizer="sgd", dtype="float16", grad_dtype="float16", master=True, seed=8, steps=7,
                                  options=dict(lr=0.05, momentum=0.9, weight_decay=1e-3), scaler=dict(SCALER, init_scale=2.0 ** 17)),
    "sgd_bf16_nomaster_f32grad": dict(optimizer="sgd", dtype="bfloat16", grad_dtype="float32", master=False, seed=9, steps=5,
                                      options=dict(lr=0.1, momentum=0.5, nesterov=True), scaler=None),
}


def conversions():
    rng = np.random.default_rng(10)
    special = [0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00001, 0x7f800001, 0x7f7fffff, 0x00000001,
               0x3f808000, 0x3f818000, 0x3f808001, 0x477fe000, 0x477ff000, 0x477fefff, 0x7f7f8000, 0x7f7f7fff,
               0x38800000, 0x387fffff, 0x33800000, 0x33000000, 0x33000001, 0x337fffff, 0x3a800000, 0xb3c00000]
    rand = list(rng.integers(0, 2 ** 32, size=3000, dtype=np.uint64).astype(np.uint32))
    # values near float16's range, where its rounding is busiest
    near = list((rng.uniform(-30, 17, size=2000)).astype(np.float32))
    near = [int(np.float32(np.sign(rng.standard_normal()) * 2.0 ** e).view(np.uint32)) for e in near]
    vals = np.array(special + [int(x) for x in rand] + near, dtype=np.uint32)
    t = torch.from_numpy(vals.view(np.float32).copy())
    return {
        "f32": [int(x) for x in vals],
        "bf16": bits16(t.to(torch.bfloat16)),
        "f16": bits16(t.to(torch.float16)),
        "bf16ToF32": bits32(t.to(torch.bfloat16).float()),
        "f16ToF32": bits32(t.to(torch.float16).float()),
    }


def dump(path, obj):
    with open(path, "w") as fh:
        json.dump(obj, fh, separators=(",", ":"), sort_keys=True)
        fh.write("\n")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    upd, uns = cpu_amp_kernels()
    meta = {
        "generator": "scripts/gen-mixed-fixtures.py",
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, "cpu") else "unknown",
        "grad_scaler": "emulated in float32 (torch._amp_update_scale_ CPU kernel: %s; "
                       "torch._amp_foreach_non_finite_check_and_unscale_ CPU kernel: %s)" % (
                           "present" if upd else "absent", "present" if uns else "absent"),
    }
    print(meta["grad_scaler"], flush=True)
    for name, c in CASES.items():
        case = run_case(c)
        case["meta"] = meta
        skipped = sum(s["skipped"] for s in case["steps"])
        print("%s: %d steps, %d skipped" % (name, len(case["steps"]), skipped))
        dump(os.path.join(out, name + ".json"), case)
    dump(os.path.join(out, "conversions.json"), dict(conversions(), meta=meta))


if __name__ == "__main__":
    main()
