"""Parameters, forward FLOPs and CPU forward latency of FARNet at the paper's 800 x 640 input.

    python benchmarks/model_cost.py [--backbone densenet121] [--repeats 5]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).parent))
from _common import time_fn, write  # noqa: E402

from farnetlib import FARNet  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--backbone", default="densenet121")
    ap.add_argument("--landmarks", type=int, default=19)
    ap.add_argument("--size", type=int, nargs=2, default=(800, 640), metavar=("H", "W"))
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    model = FARNet(args.landmarks, backbone=args.backbone).eval()
    x = torch.randn(1, 3, *args.size)
    params = sum(p.numel() for p in model.parameters())
    backbone_params = sum(p.numel() for p in model.backbone.parameters())
    with torch.no_grad():
        counter = FlopCounterMode(display=False)
        with counter:
            model(x)
        flops = counter.get_total_flops()
        timing = time_fn(lambda: model(x), repeats=args.repeats)
    result = {"backbone": args.backbone, "landmarks": args.landmarks, "input_hw": list(args.size),
              "params": params, "backbone_params": backbone_params, "forward_gflops": flops / 1e9,
              "forward_gmacs": flops / 2e9, "cpu_forward_batch1": timing}
    print(result)
    write(f"model_cost_{args.backbone}_{args.size[0]}x{args.size[1]}", result)


if __name__ == "__main__":
    main()
