"""Where a CPU training step spends its time: torch.profiler's top operators by self CPU time.

    python benchmarks/profile_step.py --size 256 224 --batch 4 [--fine-head-width 64]

Writes ``results/benchmarks/profile_step_<backbone>_<H>x<W>_b<batch>.json`` (the top operators with
their self CPU seconds and share of the step).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import write  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, nargs=2, default=(256, 224))
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--backbone", default="densenet121")
    ap.add_argument("--fine-head-width", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    from farnetlib import FARNet
    from farnetlib.engine.steps import StepContext, train_step
    from farnetlib.heatmaps import farnet_codecs
    from farnetlib.losses import CoarseToFineLoss, EWCLoss

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    h, w = args.size
    model = FARNet(19, args.backbone, fine_head_width=args.fine_head_width).train()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    coarse, fine = farnet_codecs((h, w), sigma=3.0, sigma_coarse=3.0)
    ctx = StepContext(torch.device("cpu"), "fp32", False, (h, w), fine, coarse, CoarseToFineLoss(EWCLoss(40.0)))
    batch = {"image": torch.randn(args.batch, 3, h, w), "landmarks": torch.rand(args.batch, 19, 2) * torch.tensor([w - 1.0, h - 1.0])}
    train_step(model, opt, None, batch, ctx)  # warm-up
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        train_step(model, opt, None, batch, ctx)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    top = [{"op": e.key, "calls": e.count, "self_cpu_s": e.self_cpu_time_total / 1e6,
            "share_%": 100.0 * e.self_cpu_time_total / total} for e in events[: args.top]]
    for row in top:
        print(f"{row['share_%']:5.1f} %  {row['self_cpu_s']:7.3f} s  {row['calls']:5d}  {row['op']}")
    write(f"profile_step_{args.backbone}_{h}x{w}_b{args.batch}" + (f"_fw{args.fine_head_width}" if args.fine_head_width else ""),
          {"backbone": args.backbone, "input_hw": [h, w], "batch": args.batch, "fine_head_width": args.fine_head_width,
           "step_self_cpu_s": total / 1e6, "top": top})


if __name__ == "__main__":
    main()
