"""Inference time per batch: eager, channels_last, bf16 autocast (CUDA) and torch.compile.

    python benchmarks/inference.py [--size 800 640] [--batch 1] [--repeats 5] [--no-compile]
    python benchmarks/inference.py --size 256 224 --batch 8 --no-compile   # the CPU protocol's evaluation
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import time_fn, write  # noqa: E402

from farnetlib import FARNet  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, nargs=2, default=(800, 640), metavar=("H", "W"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--backbone", default="densenet121")
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    dev = torch.device("cuda" if cuda else "cpu")
    x = torch.randn(args.batch, 3, *args.size, device=dev)
    model = FARNet(19, args.backbone).to(dev).eval()
    res = {"backbone": args.backbone, "input_hw": list(args.size), "batch": args.batch, "variants": {}}
    with torch.inference_mode():
        ref = model(x).fine
        res["variants"]["eager_fp32"] = time_fn(lambda: model(x), repeats=args.repeats, sync=cuda)
        cl = FARNet(19, args.backbone).to(dev).eval().to(memory_format=torch.channels_last)
        cl.load_state_dict(model.state_dict())
        xcl = x.contiguous(memory_format=torch.channels_last)
        res["variants"]["channels_last"] = time_fn(lambda: cl(xcl), repeats=args.repeats, sync=cuda)
        res["channels_last_max_abs_diff"] = float((cl(xcl).fine - ref).abs().max())
        if cuda:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                res["variants"]["bf16_channels_last"] = time_fn(lambda: cl(xcl), repeats=args.repeats, sync=True)
    if not args.no_compile:
        compiled = torch.compile(model)
        with torch.inference_mode():
            t0 = time.perf_counter()
            compiled(x)
            res["compile_seconds"] = time.perf_counter() - t0
            res["variants"]["torch_compile"] = time_fn(lambda: compiled(x), repeats=args.repeats, sync=cuda)
            res["compile_max_abs_diff"] = float((compiled(x).fine - ref).abs().max())
    best = min(res["variants"], key=lambda k: res["variants"][k]["median_s"])
    res["fastest"] = best
    for k, v in res["variants"].items():
        v["images_per_s"] = args.batch / v["median_s"]
        print(f"{k}: {v['median_s'] * 1000:.0f} ms per batch of {args.batch}, {v['images_per_s']:.2f} img/s")
    suffix = f"_b{args.batch}" if args.batch != 1 else ""
    write(f"inference_{args.backbone}_{args.size[0]}x{args.size[1]}{suffix}_{'cuda' if cuda else 'cpu'}", res)


if __name__ == "__main__":
    main()
