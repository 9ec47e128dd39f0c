"""Training-step throughput and peak memory of FARNet (EWC loss, Adam) per input size and batch.

    python benchmarks/train_step.py --size 800 640 --batches 1 2 4
    python benchmarks/train_step.py --size 256 224 --batches 1 4 8 16

Each batch size runs in a fresh subprocess so that its peak memory is its own: peak resident set
size on CPU, ``torch.cuda.max_memory_allocated`` on CUDA (with AMP, as the engine uses there).
The largest batch that fits is the largest measured one below the memory limit; an extrapolation
from the measured peaks (linear in batch) is reported beside it, marked as such.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import write  # noqa: E402


def one(size: tuple[int, int], batch: int, repeats: int, backbone: str) -> dict:
    import torch

    from _common import time_fn
    from farnetlib import FARNet
    from farnetlib.losses import CoarseToFineLoss, EWCLoss

    cuda = torch.cuda.is_available()
    dev = torch.device("cuda" if cuda else "cpu")
    model = FARNet(19, backbone).to(dev).train()
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    crit = CoarseToFineLoss(EWCLoss())
    scaler = torch.amp.GradScaler(dev.type, enabled=cuda)
    h, w = size
    x = torch.randn(batch, 3, h, w, device=dev)
    tc, tf = torch.rand(batch, 19, h // 2, w // 2, device=dev), torch.rand(batch, 19, h, w, device=dev)

    def step():
        with torch.autocast(dev.type, dtype=torch.float16, enabled=cuda):
            out = model(x)
        loss = crit(type(out)(out.coarse.float(), out.fine.float()), tc, tf)["loss"]
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    timing = time_fn(step, repeats=repeats, warmup=1, sync=cuda)
    peak = (torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"batch": batch, "images_per_s": batch / timing["median_s"], "step": timing,
            "peak_memory_gb": peak / 1e9, "memory_kind": "cuda max allocated" if cuda else "peak RSS", "amp": cuda}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, nargs=2, default=(800, 640), metavar=("H", "W"))
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backbone", default="densenet121")
    ap.add_argument("--memory-limit-gb", type=float, default=None, help="default: 90%% of RAM (CPU) or of the GPU")
    ap.add_argument("--_child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    size = tuple(args.size)
    if args._child is not None:
        print(json.dumps(one(size, args._child, args.repeats, args.backbone)))
        return
    import torch

    if args.memory_limit_gb is None:
        total = (torch.cuda.get_device_properties(0).total_memory if torch.cuda.is_available()
                 else __import__("os").sysconf("SC_PAGE_SIZE") * __import__("os").sysconf("SC_PHYS_PAGES"))
        args.memory_limit_gb = 0.9 * total / 1e9
    results = []
    for b in args.batches:
        proc = subprocess.run([sys.executable, __file__, "--size", *map(str, size), "--repeats", str(args.repeats),
                               "--backbone", args.backbone, "--_child", str(b)], capture_output=True, text=True)
        if proc.returncode != 0:
            results.append({"batch": b, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr else f"exit {proc.returncode}"})
            print(f"batch {b}: failed ({results[-1]['error']})")
            break
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        r = results[-1]
        print(f"batch {b}: {r['images_per_s']:.3f} img/s, peak {r['peak_memory_gb']:.2f} GB")
        if r["peak_memory_gb"] > args.memory_limit_gb:
            break
    ok = [r for r in results if "error" not in r and r["peak_memory_gb"] <= args.memory_limit_gb]
    fit = None
    if len(ok) >= 2:
        b0, b1 = ok[0], ok[-1]
        slope = (b1["peak_memory_gb"] - b0["peak_memory_gb"]) / (b1["batch"] - b0["batch"])
        if slope > 0:
            fit = int(b0["batch"] + (args.memory_limit_gb - b0["peak_memory_gb"]) / slope)
    payload = {"backbone": args.backbone, "input_hw": list(size), "memory_limit_gb": args.memory_limit_gb,
               "runs": results, "largest_measured_batch_that_fits": ok[-1]["batch"] if ok else None,
               "largest_batch_extrapolated": fit}
    write(f"train_step_{args.backbone}_{size[0]}x{size[1]}_{'cuda' if torch.cuda.is_available() else 'cpu'}", payload)


if __name__ == "__main__":
    main()
