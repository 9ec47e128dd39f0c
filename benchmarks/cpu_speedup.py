"""Training-step speed of the CPU protocol under each execution option, side by side in one run.

    python benchmarks/cpu_speedup.py                     # densenet121, 256 x 224, batch 4, EWC, Adam
    python benchmarks/cpu_speedup.py --variants fp32 channels_last --steps 3

Variants (each in a fresh subprocess, same seed, same synthetic batch):

- ``today``: eager float32, NCHW, with the narrow (64-channel) fine head: the engine and model as
  they were before this benchmark, the baseline of every ratio;
- ``fp32``: eager float32, NCHW, with the reference-width fine head (the model default now);
- ``channels_last``: eager float32, model and input in ``torch.channels_last``;
- ``bf16``: ``torch.autocast("cpu", torch.bfloat16)`` around the forward pass, NCHW;
- ``bf16_channels_last``: both;
- ``compile``: ``torch.compile(model)`` float32 NCHW; the first (compiling) step is timed apart and
  counted against a 45-minute run in ``compile_share_of_45min``.

The step is the engine's own (:func:`farnetlib.engine.steps.train_step`), so what is measured is
what training runs. Images/s is ``batch / median step time``; the speed-up is against ``today`` of
the same run. Results: ``results/benchmarks/cpu_speedup_<backbone>_<H>x<W>_b<batch>.json``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import write  # noqa: E402

VARIANTS = {
    "today": {"precision": "fp32", "channels_last": False, "compile": False, "fine_head_width": 64},
    "fp32": {"precision": "fp32", "channels_last": False, "compile": False, "fine_head_width": None},
    "channels_last": {"precision": "fp32", "channels_last": True, "compile": False, "fine_head_width": None},
    "bf16": {"precision": "bf16", "channels_last": False, "compile": False, "fine_head_width": None},
    "bf16_channels_last": {"precision": "bf16", "channels_last": True, "compile": False, "fine_head_width": None},
    "compile": {"precision": "fp32", "channels_last": False, "compile": True, "fine_head_width": None},
}
SLOW_STEP_S = 20.0  # a variant whose warm-up step is slower than this gets 1-2 timed steps, not --steps


def one(variant: str, size: tuple[int, int], batch: int, steps: int, backbone: str, threads: int) -> dict:
    import torch

    from _common import time_fn
    from farnetlib import FARNet
    from farnetlib.engine.steps import StepContext, train_step
    from farnetlib.heatmaps import farnet_codecs
    from farnetlib.losses import CoarseToFineLoss, EWCLoss

    opts = VARIANTS[variant]
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = FARNet(19, backbone, fine_head_width=opts["fine_head_width"])
    if opts["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    net = torch.compile(model) if opts["compile"] else model
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    coarse, fine = farnet_codecs(size, sigma=3.0, sigma_coarse=3.0)
    ctx = StepContext(device=torch.device("cpu"), precision=opts["precision"], channels_last=opts["channels_last"],
                      input_size=size, codec_fine=fine, codec_coarse=coarse, criterion=CoarseToFineLoss(EWCLoss(40.0)))
    h, w = size
    g = torch.Generator().manual_seed(0)
    batch_data = {"image": torch.randn(batch, 3, h, w, generator=g),
                  "landmarks": torch.rand(batch, 19, 2, generator=g) * torch.tensor([w - 1.0, h - 1.0])}
    t0 = time.perf_counter()
    train_step(net, opt, None, batch_data, ctx)  # warm-up (and compilation)
    first_s = time.perf_counter() - t0
    if opts["compile"]:  # the first compiled steps may still recompile: one more untimed step
        train_step(net, opt, None, batch_data, ctx)
    repeats = steps if first_s <= SLOW_STEP_S or opts["compile"] else 1
    timing = time_fn(lambda: train_step(net, opt, None, batch_data, ctx), repeats=repeats, warmup=0)
    out = {"variant": variant, **opts, "batch": batch, "images_per_s": batch / timing["median_s"], "step": timing,
           "first_step_s": first_s}
    compile_s = first_s if opts["compile"] else None
    if compile_s is not None:
        out["first_step_with_compile_s"] = compile_s
        out["compile_share_of_45min"] = compile_s / 2700.0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, nargs=2, default=(256, 224), metavar=("H", "W"))
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per variant (after one warm-up step)")
    ap.add_argument("--backbone", default="densenet121")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    size = tuple(args.size)
    if args._child is not None:
        print(json.dumps(one(args._child, size, args.batch, args.steps, args.backbone, args.threads)))
        return
    results = []
    for name in args.variants:
        cmd = [sys.executable, __file__, "--size", *map(str, size), "--batch", str(args.batch), "--steps",
               str(args.steps), "--backbone", args.backbone, "--threads", str(args.threads), "--_child", name]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            err = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
            results.append({"variant": name, "error": err})
            print(f"{name}: failed ({err})", flush=True)
            continue
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"{name}: {results[-1]['images_per_s']:.3f} img/s", flush=True)
    base = next((r for r in results if r["variant"] == "today" and "error" not in r), None)
    for r in results:
        if base is not None and "error" not in r:
            r["speedup_vs_today"] = r["images_per_s"] / base["images_per_s"]
    import torch

    from farnetlib.precision import cpu_flags as read_cpu_flags

    cpu_flags = read_cpu_flags()
    payload = {"backbone": args.backbone, "input_hw": list(size), "batch": args.batch, "loss": "ewc",
               "optimizer": "adam", "threads": args.threads, "cpu_isa": cpu_flags,
               "mkldnn_bf16_supported": bool(getattr(torch.backends.mkldnn, "is_available", lambda: False)())
               and _bf16_supported(), "runs": results}
    write(f"cpu_speedup_{args.backbone}_{size[0]}x{size[1]}_b{args.batch}", payload)
    for r in results:
        if "error" not in r:
            print(f"{r['variant']:>20}: {r['images_per_s']:.3f} img/s  x{r.get('speedup_vs_today', float('nan')):.2f}")


def _bf16_supported() -> bool:
    import torch

    fn = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(fn()) if fn is not None else False
    except Exception:  # noqa: BLE001 - older builds
        return False


if __name__ == "__main__":
    main()
