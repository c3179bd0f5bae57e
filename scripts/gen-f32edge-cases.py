#!/usr/bin/python3
"""Inputs of the float32-edge reference cases (docs/numerics.md#the-float32-edge): weights and
gradients where the official code's float32 norms overflow. Writes <case>.input.json files in
the official-code harness's format (test/fixtures/README.md, "Reference cases"); the harness runs
the official clovaai/AdamP v0.3.0 on them and scripts/convert-fixtures.js turns its output into
test/fixtures/<case>.{json,f32}.

    /usr/bin/python3 scripts/gen-f32edge-cases.py OUT_DIR
"""
import json
import os
import random
import sys


def case(out, name, opt, hp, params, grads):
    with open(os.path.join(out, f"{name}.input.json"), "w") as f:
        json.dump({"name": name, "optimizer": opt, "hyperparameters": hp, "dtype": "float32", "params": params, "grads": grads}, f)


def main(out):
    os.makedirs(out, exist_ok=True)
    w = [2e19] * 4  # ||p_row||^2 = 8e38 > float32 max: the official row norm is inf
    case(out, "sgdp_f32edge_huge_weights", "sgdp", {"lr": 0.1, "momentum": 0.9},
         [{"shape": [2, 2], "data": w}], [[[1.0, 0.0, 0.0, 1.0]], [[0.5, -0.25, 0.0, 1.0]]])
    case(out, "sgdp_f32edge_nesterov_overflow", "sgdp", {"lr": 0.1, "momentum": 0.9, "nesterov": True},
         [{"shape": [2, 2], "data": w}], [[[3e38, 0.0, 0.0, 1.0]]])
    case(out, "sgdp_f32edge_huge_grads", "sgdp", {"lr": 0.1, "momentum": 0.0, "dampening": 0.5},
         [{"shape": [2, 2], "data": [1.0, 2.0, 3.0, 4.0]}], [[[3e38, 3e38, 3e38, -3e38]], [[3e38, 3e38, 3e38, -3e38]]])
    random.seed(5)
    big = [random.uniform(-1, 1) * 3e19 for _ in range(30)]
    case(out, "adamp_f32edge_huge_weights", "adamp", {"lr": 0.01, "weight_decay": 0.1},
         [{"shape": [6, 5], "data": big}, {"shape": [5], "data": [1.0, 2.0, 3.0, 4.0, 5.0]}],
         [[[random.gauss(0, 1) for _ in range(30)], [0.1] * 5], [[random.gauss(0, 1e3) for _ in range(30)], None]])


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: scripts/gen-f32edge-cases.py OUT_DIR")
    main(sys.argv[1])
