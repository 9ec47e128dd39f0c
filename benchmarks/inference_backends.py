"""Inference backends side by side on a trained run: network speed (interleaved rounds), end-to-end
evaluation time, and parity of the decoded coordinates against eager PyTorch fp32.

    python benchmarks/inference_backends.py --run results/isbi2015_cpu/isbi2015_cpu_recipe2

Variants: eager fp32 (NCHW), channels_last, [torch.compile with --compile], ONNX Runtime, OpenVINO
f32 (pinned), OpenVINO bf16 (native where the CPU has bf16), OpenVINO int8 (NNCF, calibrated on
training images only; --no-int8 to skip). Network speed at the run's input size (batch --batch) and
at --large (batch 1), each round timing every variant once, in turn. Parity and end-to-end time on
the validation images and the first test split (loading, resizing, network and decoding; one pass
per variant). Needs the run's checkpoints/best.pt; writes results/benchmarks/inference_backends_<run>.json.
The machine should be otherwise idle.
"""
from __future__ import annotations

import argparse
import copy
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, rss_during, write  # noqa: E402

from farnetlib.data import LandmarkDataset  # noqa: E402
from farnetlib.data.registry import get_dataset  # noqa: E402
from farnetlib.engine.evaluation import load_checkpoint, predict_source  # noqa: E402
from farnetlib.engine.sources import build_source, validation_split  # noqa: E402
from farnetlib.inference import TorchBackend, export_run, make_backend, quantize_run  # noqa: E402


def variants(model, run: Path, out: Path, size, int8_calibration=None, compile_=False) -> dict:
    """name -> backend callable (normalised batch -> fine heatmaps) for one input size."""
    onnx = export_run(run, "onnx", out_dir=out / "onnx", input_size=size)
    xml = export_run(run, "openvino", out_dir=out / "openvino", input_size=size)
    fresh = lambda: copy.deepcopy(model)  # noqa: E731 - each variant its own copy of the loaded weights
    out_v = {"eager_fp32": TorchBackend(fresh().to(memory_format=torch.contiguous_format), channels_last=False,
                                        device="cpu"),
             "channels_last": TorchBackend(fresh(), channels_last=True, device="cpu")}
    if compile_:
        out_v["torch_compile"] = TorchBackend(torch.compile(fresh().to(memory_format=torch.contiguous_format)),
                                              channels_last=False, device="cpu")
    out_v["onnxruntime"] = make_backend("onnxruntime", export_path=onnx, threads=torch.get_num_threads())
    out_v["openvino_f32"] = make_backend("openvino", export_path=xml, precision="fp32", threads=torch.get_num_threads())
    out_v["openvino_bf16"] = make_backend("openvino", export_path=xml, precision="bf16", threads=torch.get_num_threads())
    if int8_calibration is not None:
        q = quantize_run(run, int8_calibration, out_dir=out / "int8")
        out_v["openvino_int8"] = make_backend("openvino", export_path=q, precision="fp32", threads=torch.get_num_threads())
        out_v["openvino_int8"].precision = "int8 (NNCF; other layers fp32)"
    return out_v


class ReferenceCode:
    """The original FARNet code's model (``model.py`` of github.com/JuvenileInWind/FARNet, a checkout
    the user gives: nothing of it is copied here) with random weights, eager fp32 NCHW as it runs
    there; its ``densenet121(pretrained=True)`` is built with ``weights=None`` (no download)."""

    precision = "fp32 (original code, eager NCHW)"

    def __init__(self, checkout: Path) -> None:
        import importlib.util

        import torchvision.models as tvm

        path = Path(checkout) / "model.py"
        if not path.is_file():
            raise SystemExit(f"--reference-code: no model.py in {checkout} (a checkout of github.com/JuvenileInWind/FARNet)")
        spec = importlib.util.spec_from_file_location("farnet_reference_model", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        original = tvm.densenet121
        tvm.densenet121 = lambda *args, **kwargs: original(weights=None)
        try:
            self.model = module.Farnet().eval()
        finally:
            tvm.densenet121 = original

    @torch.no_grad()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.model(torch.from_numpy(batch))[0].numpy()  # (fine heatmaps, coarse ones)


def interleaved(backends: dict, batch: np.ndarray, rounds: int) -> dict:
    """Median seconds per call of each backend, timed one after another in each round (warm-up first);
    then, untimed, the memory each call needs (``_common.rss_during``)."""
    first, failed = {}, {}
    for name, fn in list(backends.items()):  # warm-up; for torch.compile this call compiles
        t0 = time.perf_counter()
        try:
            fn(batch)
        except Exception as err:  # a variant that cannot run here (e.g. no C++ compiler for inductor)
            failed[name] = {"error": f"{type(err).__name__}: {err}"[:500]}
            print(f"{name}: failed, left out: {failed[name]['error']}", flush=True)
            del backends[name]
            continue
        first[name] = time.perf_counter() - t0
    times = {k: [] for k in backends}
    for _ in range(rounds):
        for name, fn in backends.items():
            t0 = time.perf_counter()
            fn(batch)
            times[name].append(time.perf_counter() - t0)
    memory = {k: rss_during(lambda fn=fn: fn(batch)) for k, fn in backends.items()}  # after the timed rounds
    return {k: {"median_s": statistics.median(v), "min_s": min(v), "images_per_s": len(batch) / statistics.median(v),
                "first_call_s": first[k],
                "precision": getattr(backends[k], "precision", "fp32"), "memory": memory[k]} for k, v in times.items()} | failed


def parity(model, cfg, sources: dict, backends: dict) -> dict:
    """Per backend and split: MRE, end-to-end seconds, coordinate shift against eager fp32."""
    out, ref = {}, {}
    for split, (source, idx) in sources.items():  # untimed: the image files into the OS cache for every variant
        predict_source(model, source, cfg, split, indices=idx, progress=False)
    for name, fn in backends.items():
        out[name] = {}
        for split, (source, idx) in sources.items():
            fnt = (lambda x, f=fn: torch.from_numpy(f(x.numpy())))
            t0 = time.perf_counter()
            preds = predict_source(model, source, cfg, split, indices=idx, progress=False, heatmaps=fnt)
            seconds = time.perf_counter() - t0
            unit = "error_mm" if preds["error_mm"].notna().all() else "error_px"
            xy = preds[["pred_x", "pred_y"]].to_numpy()
            entry = {"seconds_end_to_end": seconds, "images": int(preds["id"].nunique()), "mre": float(preds[unit].mean()),
                     "unit": unit.split("_")[1]}
            if name == "eager_fp32":
                ref[split] = (xy, preds)
            else:
                shift = np.sqrt(((xy - ref[split][0]) ** 2).sum(1))
                spacing_mm = get_dataset(cfg.dataset).spacing_mm
                moved = shift * spacing_mm > 1.0 if spacing_mm else shift > 10.0
                entry.update(max_shift_px=float(shift.max()), mean_shift_px=float(shift.mean()),
                             moved_over_1mm=int(moved.sum()), moved_share_percent=float(moved.mean() * 100),
                             mre_minus_eager=entry["mre"] - out["eager_fp32"][split]["mre"],
                             end_to_end_speedup=out["eager_fp32"][split]["seconds_end_to_end"] / seconds)
            out[name][split] = entry
    return out


def reference_only(model, run: Path, args) -> None:
    """Eager fp32 NCHW (ours, the run's weights) against the original code's model (random weights:
    speed does not depend on them) at the large size, batch 1, interleaved rounds."""
    if not args.reference_code:
        raise SystemExit("--reference-only needs --reference-code DIR")
    backends = {"eager_fp32": TorchBackend(model.to(memory_format=torch.contiguous_format), channels_last=False,
                                           device="cpu"),
                "original_code": ReferenceCode(Path(args.reference_code))}
    x = np.random.default_rng(0).standard_normal((1, 3, *args.large)).astype(np.float32)
    res = {"run": str(run), "machine": machine(), "threads": args.threads, "rounds": args.rounds,
           "speed_large": {"input_hw": list(args.large), "batch": 1, **interleaved(backends, x, args.rounds)},
           "parameters": {"ours": sum(p.numel() for p in model.parameters()),
                          "original_code_registered": sum(p.numel() for p in backends["original_code"].model.parameters())}}
    ours, ref = (res["speed_large"][k]["images_per_s"] for k in ("eager_fp32", "original_code"))
    res["speed_large"]["ours_vs_original"] = ours / ref
    print(f"800 x 640 b1: ours {ours:.3f} img/s, original code {ref:.3f} img/s: ours x{ours / ref:.2f}")
    write(f"inference_vs_original_{run.name}", res)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="run folder with checkpoints/best.pt")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--large", type=int, nargs=2, default=(800, 640), metavar=("H", "W"))
    ap.add_argument("--calibration", type=int, default=32, help="training images for int8 calibration")
    ap.add_argument("--no-int8", action="store_true")
    ap.add_argument("--compile", action="store_true", help="also torch.compile (minutes to compile on 2 cores)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--test-split", help="the test split timed end to end (default: the run's first, else the dataset's)")
    ap.add_argument("--out", default="/tmp/farnet_inference_backends", help="where the exports go")
    ap.add_argument("--reference-code", metavar="DIR",
                    help="a checkout of the original FARNet code: its model is timed at the large size too")
    ap.add_argument("--reference-only", action="store_true",
                    help="with --reference-code: only eager fp32 against the original code at the large size")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run, out = Path(args.run), Path(args.out)
    model, cfg, _ = load_checkpoint(run / "checkpoints" / "best.pt", "cpu")
    if args.reference_only:
        reference_only(model, run, args)
        return
    train_source = build_source(cfg, get_dataset(cfg.dataset).train_split)
    train_idx, val_idx = validation_split(train_source, cfg)
    test_split = args.test_split or (cfg.splits_to_test or get_dataset(cfg.dataset).test_splits(cfg))[0]
    sources = {"val": (train_source, val_idx), test_split: (build_source(cfg, test_split), None)}
    calib = None
    if not args.no_int8:
        ds = LandmarkDataset(train_source, cfg.input_size, indices=train_idx[:args.calibration],
                             intensity_range=cfg.intensity_range, contrast=cfg.contrast)
        calib = [ds[j]["image"].numpy()[None] for j in range(len(ds))]
    res = {"run": str(run), "machine": machine(), "threads": args.threads, "input_hw": list(cfg.input_size),
           "batch": args.batch, "rounds": args.rounds, "int8_calibration_images": 0 if calib is None else len(calib)}
    backends = variants(model, run, out / "run_size", cfg.input_size, calib, args.compile)
    val_ds = LandmarkDataset(train_source, cfg.input_size, indices=val_idx[:args.batch],
                             intensity_range=cfg.intensity_range, contrast=cfg.contrast)
    batch = np.stack([val_ds[j]["image"].numpy() for j in range(len(val_ds))]).astype(np.float32)
    res["speed_run_size"] = interleaved(backends, batch, args.rounds)
    res["parity"] = parity(model, cfg, sources, backends)
    del backends
    large = variants(model, run, out / "large", tuple(args.large), None, args.compile)
    if args.reference_code:
        large["original_code"] = ReferenceCode(Path(args.reference_code))
    x = np.random.default_rng(0).standard_normal((1, 3, *args.large)).astype(np.float32)
    res["speed_large"] = {"input_hw": list(args.large), "batch": 1, **interleaved(large, x, args.rounds)}
    res["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for key in ("speed_run_size", "speed_large"):
        eager = res[key]["eager_fp32"]["images_per_s"]
        for name, v in res[key].items():
            if isinstance(v, dict) and "images_per_s" in v:
                v["speedup_vs_eager"] = v["images_per_s"] / eager
                print(f"{key} {name:15s} {v['images_per_s']:7.2f} img/s  x{v['speedup_vs_eager']:.2f}  "
                      f"call {v['memory']['call_mib']:6.0f} MiB  ({v['precision']})")
    if "original_code" in res["speed_large"]:
        ratio = res["speed_large"]["eager_fp32"]["images_per_s"] / res["speed_large"]["original_code"]["images_per_s"]
        res["speed_large"]["ours_eager_vs_original"] = ratio
        print(f"speed_large: our eager fp32 / the original code = x{ratio:.2f}")
    for name, splits in res["parity"].items():
        for split, v in splits.items():
            print(f"parity {name:15s} {split:6s} MRE {v['mre']:.4f} {v['unit']}  e2e {v['seconds_end_to_end']:.1f} s  "
                  + (f"max shift {v['max_shift_px']:.4f} px, moved>1mm {v['moved_over_1mm']}" if "max_shift_px" in v else ""))
    write(f"inference_backends_{run.name}", res)


if __name__ == "__main__":
    main()
