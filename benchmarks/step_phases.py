"""Where a CPU training step's time goes by phase (forward + loss, backward, optimizer update), at
several input sizes and batch sizes, with Adam's default (foreach) and fused implementations.

    python benchmarks/step_phases.py --sizes 192 160 384 320 --batches 4 8 --precision bf16 --channels-last

A step's time is close to ``fixed + per_pixel * batch * H * W``; the fit over the variants (least
squares, printed and written) says how much of a step does not shrink with the input: what a larger
batch or a cheaper update would save per epoch. Variants are timed in interleaved rounds (each round
times every variant in turn), medians reported. Writes ``results/benchmarks/step_phases_<...>.json``.
The machine should be otherwise idle.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, write  # noqa: E402

from farnetlib import FARNet  # noqa: E402
from farnetlib.precision import autocast, to_layout  # noqa: E402
from farnetlib.engine.steps import StepContext, make_targets  # noqa: E402
from farnetlib.heatmaps import farnet_codecs  # noqa: E402
from farnetlib.losses import CoarseToFineLoss, EWCLoss  # noqa: E402


class Variant:
    """One (input size, batch, optimizer) setting with its own model, optimizer and fixed batch."""

    def __init__(self, size: tuple[int, int], batch: int, fused: bool, args) -> None:
        h, w = size
        torch.manual_seed(0)
        self.name = f"{h}x{w}_b{batch}_{'fused' if fused else 'foreach'}"
        self.size, self.batch_size, self.fused = size, batch, fused
        self.model = to_layout(FARNet(args.landmarks, args.backbone).train(), args.channels_last)
        self.opt = torch.optim.Adam(self.model.parameters(), 1e-3, fused=fused, foreach=None if fused else True)
        coarse, fine = farnet_codecs(size, sigma=3.0, sigma_coarse=3.0)
        self.ctx = StepContext(torch.device("cpu"), args.precision, args.channels_last, size, fine, coarse,
                               CoarseToFineLoss(EWCLoss(40.0)))
        self.images = to_layout(torch.randn(batch, 3, h, w), args.channels_last)
        self.landmarks = torch.rand(batch, args.landmarks, 2) * torch.tensor([w - 1.0, h - 1.0])
        self.times: dict[str, list[float]] = {"forward_loss": [], "backward": [], "update": [], "step": []}

    def step(self, record: bool = True) -> None:
        t0 = time.perf_counter()
        coarse_t, fine_t = make_targets(self.landmarks, self.ctx, None)
        with autocast(self.ctx.device, self.ctx.precision):
            out = self.model(self.images)
        loss = self.ctx.criterion(type(out)(out.coarse.float(), out.fine.float()), coarse_t, fine_t, None)["loss"]
        t1 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        self.opt.step()
        t3 = time.perf_counter()
        if record:
            for key, value in zip(self.times, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
                self.times[key].append(value)

    def summary(self) -> dict:
        med = {k: statistics.median(v) for k, v in self.times.items()}
        return {"input_hw": list(self.size), "batch": self.batch_size, "adam": "fused" if self.fused else "foreach",
                **{f"{k}_s": v for k, v in med.items()}, "images_per_s": self.batch_size / med["step"],
                "steps_timed": len(self.times["step"])}


def fit_fixed_cost(rows: list[dict]) -> dict:
    """Least-squares ``step_s = fixed_s + per_mpx_s * batch * H * W / 1e6`` over the foreach rows."""
    rows = [r for r in rows if r["adam"] == "foreach"]
    x = np.array([r["batch"] * r["input_hw"][0] * r["input_hw"][1] / 1e6 for r in rows])
    y = np.array([r["step_s"] for r in rows])
    a = np.c_[np.ones_like(x), x]
    (fixed, per_mpx), *_ = np.linalg.lstsq(a, y, rcond=None)
    return {"fixed_s": float(fixed), "per_megapixel_s": float(per_mpx),
            "max_abs_residual_s": float(np.abs(a @ [fixed, per_mpx] - y).max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[192, 160, 384, 320], help="H W pairs")
    ap.add_argument("--batches", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--no-fused", action="store_true", help="only Adam's default (foreach) update")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=2, help="timed steps per variant per round")
    ap.add_argument("--landmarks", type=int, default=19)
    ap.add_argument("--backbone", default="densenet121")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tag", default="", help="suffix of the output file (e.g. the allocator compared)")
    args = ap.parse_args()
    if len(args.sizes) % 2:
        raise SystemExit("--sizes takes H W pairs")
    torch.set_num_threads(args.threads)
    sizes = [tuple(args.sizes[i:i + 2]) for i in range(0, len(args.sizes), 2)]
    fused = [False] if args.no_fused else [False, True]
    variants = [Variant(s, b, f, args) for s in sizes for b in args.batches for f in fused]
    for v in variants:
        v.step(record=False)  # warm-up (oneDNN primitive creation)
    for r in range(args.rounds):
        for v in variants:
            for _ in range(args.steps):
                v.step()
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    rows = [v.summary() for v in variants]
    for row in rows:
        print(f"{row['input_hw'][0]}x{row['input_hw'][1]} b{row['batch']} {row['adam']:7s}  step {row['step_s']:6.3f} s "
              f"(forward+loss {row['forward_loss_s']:.3f}, backward {row['backward_s']:.3f}, update {row['update_s']:.3f})  "
              f"{row['images_per_s']:.2f} img/s")
    fit = fit_fixed_cost(rows)
    print(f"fit: step = {fit['fixed_s']:.3f} s + {fit['per_megapixel_s']:.3f} s per megapixel of batch "
          f"(max residual {fit['max_abs_residual_s']:.3f} s)")
    tag = "_".join(f"{h}x{w}" for h, w in sizes) + f"_b{'-'.join(map(str, args.batches))}_{args.precision}" + (
        "_cl" if args.channels_last else "") + (f"_{args.tag}" if args.tag else "")
    write(f"step_phases_{args.backbone}_{tag}", {
        "machine": machine(), "threads": args.threads, "precision": args.precision, "channels_last": args.channels_last,
        "landmarks": args.landmarks, "rounds": args.rounds, "steps_per_round": args.steps, "variants": rows, "fit": fit})


if __name__ == "__main__":
    main()
