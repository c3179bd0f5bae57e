"""Continue an adamp (Node.js) checkpoint in PyTorch with the official optimizer, and write back.

    python3 examples/pytorch_interop.py CHECKPOINT GRADS STEPS OUT

CHECKPOINT  a checkpoint saved by adamp with { params: true }
GRADS       a safetensors file with the gradient of param i at step k as `grad.{k}.{i}`
            (absent: no gradient that step, i.e. p.grad = None)
STEPS       how many steps to run
OUT         where to write params + optimizer state afterwards, in the same format, for adamp's
            loadCheckpoint

Needs torch and the official optimizers (`pip install adamp`, or clovaai/AdamP on PYTHONPATH).
The file format is simple enough that this script reads and writes it with struct/json alone;
`safetensors.torch.load_file` / `save_file` give the same tensors and metadata.
"""
import json
import struct
import sys

import torch
from adamp import AdamP, SGDP

DTYPES = {"F32": torch.float32, "I64": torch.int64}
NAMES = {torch.float32: "F32", torch.int64: "I64"}


def read_safetensors(path):
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8:8 + n])
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, e in header.items():
        begin, end = e["data_offsets"]
        raw = bytearray(buf[8 + n + begin:8 + n + end])
        flat = torch.frombuffer(raw, dtype=DTYPES[e["dtype"]]) if raw else torch.zeros(0, dtype=DTYPES[e["dtype"]])
        tensors[name] = flat.reshape(e["shape"])
    return tensors, meta


def write_safetensors(path, tensors, meta):
    header, chunks, offset = {"__metadata__": meta}, [], 0
    for name, t in tensors.items():
        data = t.detach().contiguous().numpy().tobytes()
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    h = json.dumps(header).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(chunks))


def checkpoint_to_torch(tensors, meta):
    """adamp checkpoint -> (params, optimizer state_dict) in the official optimizer's layout."""
    n = len(json.loads(meta["param_shapes"]))
    params = [torch.nn.Parameter(tensors["params.%d" % i].clone()) for i in range(n)]
    groups = json.loads(meta["param_groups"])
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    state = {}
    for name, t in tensors.items():
        if name.startswith("state."):
            _, i, key = name.split(".", 2)
            state.setdefault(int(i), {})[key] = int(t.item()) if key == "step" else t.clone()
    return params, {"state": state, "param_groups": groups}


def torch_to_checkpoint(kind, params, sd):
    """(params, official state_dict) -> adamp checkpoint tensors and metadata."""
    tensors = {"params.%d" % i: p.detach() for i, p in enumerate(params)}
    for i, s in sd["state"].items():
        for key, v in s.items():
            tensors["state.%d.%s" % (i, key)] = torch.tensor(int(v), dtype=torch.int64) if key == "step" else v
    groups = [dict(g, betas=list(g["betas"])) if "betas" in g else dict(g) for g in sd["param_groups"]]
    meta = {
        "format": "adamp-optimizer/1",
        "optimizer": kind,
        "param_groups": json.dumps(groups),
        "param_shapes": json.dumps([list(p.shape) for p in params]),
    }
    return tensors, meta


def main(checkpoint, grads_path, steps, out):
    tensors, meta = read_safetensors(checkpoint)
    params, sd = checkpoint_to_torch(tensors, meta)
    kind = meta["optimizer"]
    hp = [{k: v for k, v in g.items() if k != "params"} for g in sd["param_groups"]]
    groups = [dict(h, params=[params[i] for i in g["params"]]) for h, g in zip(hp, sd["param_groups"])]
    opt = AdamP(groups) if kind == "AdamP" else SGDP(groups, lr=hp[0]["lr"])
    opt.load_state_dict(sd)
    grads, _ = read_safetensors(grads_path)
    for k in range(steps):
        for i, p in enumerate(params):
            g = grads.get("grad.%d.%d" % (k, i))
            p.grad = None if g is None else g.clone()
        opt.step()
    write_safetensors(out, *torch_to_checkpoint(kind, params, opt.state_dict()))


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
