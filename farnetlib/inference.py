"""Inference on CPUs (and GPUs): exported models, interchangeable backends, and a ``Predictor``.

``export_run(run_dir, "onnx" | "openvino")`` writes the run's selected model (``best.pt``) as a graph
from the normalised image batch ``(B, 3, H, W)`` to the fine heatmaps ``(B, K, H, W)``, and beside it
``preprocess.json``: input size, intensity normalisation, landmark names, decoder, dataset and spacing
rule, so that the exported file alone serves predictions in original pixels.

Backends compute the fine heatmaps of a batch; decoding (fp32) and the mapping back to original
pixels are shared by all of them:

- ``torch``: eager PyTorch (the model's own precision: fp32 by default);
- ``onnxruntime``: ONNX Runtime's CPU provider (``pip install farnet[onnx]``);
- ``openvino``: OpenVINO's CPU plugin (``pip install farnet[openvino]``) with the inference
  precision **pinned**: ``f32`` by default, ``bf16`` only when asked for. OpenVINO's own default on a
  CPU with bf16 is bf16, which moved decoded coordinates of a trained ISBI model by up to 20.7
  original pixels; the precision used is recorded with every result.

``Predictor.from_run(run_dir, backend=...)`` / ``Predictor.from_export(path)``: ``predict(image,
path or array)`` gives each landmark in original pixels (and mm where the spacing is known) with
its heatmap peak; where the run's landmarks have a cephalometric analysis (ISBI's 19, or a CSV
dataset whose ``dataset.json`` names one), ``measure(...)`` gives its measurements and classes per
image (:mod:`farnetlib.ceph`, from the sub-pixel predictions) and ``predict`` attaches them (a dict) as
``table.attrs["measurements"]``.
"""
from __future__ import annotations

import importlib
import json
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from .checkpoint import load_checkpoint, selected_checkpoint
from .config import describe_ground_truth
from .data.io import gray_uint8, read_gray, read_json, read_json_record, sha256_file
from .data.transforms import IMAGENET_MEAN, IMAGENET_STD, image_to_input
from .heatmaps import HeatmapCodec, farnet_codecs, heatmap_channels
from .precision import autocast, is_channels_last, resolve_device, resolve_precision, to_layout
from .progress import tqdm

__all__ = ["BACKENDS", "fine_heatmaps", "resolve_backend", "Preprocess", "Predictor", "export_run", "quantize_run", "make_backend", "MissingExtra",
           "heatmap_backend"]

BACKENDS = ("torch", "onnxruntime", "openvino")
_EXTRAS = {"onnxruntime": ("onnxruntime", "onnx"), "openvino": ("openvino", "openvino"), "nncf": ("nncf", "openvino")}


class MissingExtra(ImportError):
    """A backend's package is not installed: the message names the extra to install."""


def _require(backend: str):
    module, extra = _EXTRAS[backend]
    if module in ("openvino", "nncf") and os.environ.get("LD_PRELOAD"):
        # a preloaded malloc (tcmalloc, jemalloc) and OpenVINO's oneTBB: TBB dlopens libtbbbind with
        # RTLD_DEEPBIND, so hwloc frees with glibc what the preloaded malloc allocated, and the export
        # aborts ("munmap_chunk(): invalid pointer", "double free"; uxlfoundation/oneTBB#1645). This
        # variable, read when TBB loads, makes it bind normally; it changes no result.
        os.environ.setdefault("TBB_ENABLE_SANITIZERS", "1")
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(f"backend {backend!r} needs the {module} package: pip install 'farnetlib[{extra}]' "
                           f"(or pip install {module})") from None


@dataclass
class Preprocess:
    """What turns an image into the model's input and the output back into original pixels."""

    input_size: tuple[int, int]  # (H, W) of the model input (= fine heatmap)
    num_landmarks: int
    landmark_names: list[str]
    decoder: str | dict = "quadratic"  # a name, or {"name": ..., parameters} (farnetlib.heatmaps.build_decoder)
    targets: str = "landmarks"  # the heatmaps: one per landmark, or "spine_corners" (4 corner types; config `targets`)
    intensity_range: str = "0-1"  # "0-255": the reference code's 0-255 intensities before ImageNet normalisation
    contrast: str = "none"  # "clahe": adaptive histogram equalisation at the input size (config `contrast`)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    dataset: str = ""
    spacing_rule: str = ""  # e.g. "0.1 mm/px", "landmarks [1, 5] (0-based) set to 50 mm", "unknown"
    spacing_mm: float | None = None  # a fixed spacing (ISBI 0.1), else None
    run: str = ""
    source: dict = field(default_factory=dict)  # checkpoint, selected epoch, commit
    analysis: dict | None = None  # the cephalometric analysis of the landmarks (farnetlib.ceph.Analysis.to_dict())

    def image_to_input(self, image: np.ndarray) -> np.ndarray:
        """A (H, W) uint8 grayscale image -> the normalised (3, H, W) float32 model input."""
        return image_to_input(image, self.input_size, self.intensity_range, self.contrast).numpy()

    def codec(self) -> HeatmapCodec:
        """The decode-only codec of the fine output (the geometry, the decoder, the targets)."""
        return farnet_codecs(self.input_size, self.decoder, self.targets, self.num_landmarks)[1]

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> "Preprocess":
        """``preprocess.json`` of an export; a damaged or edited file is a ValueError naming it."""
        values = read_json(path, ValueError, "preprocess file")
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a JSON object of preprocessing fields")
        unknown = set(values) - set(cls.__dataclass_fields__) - {"reference_0_255"}
        if unknown:
            raise ValueError(f"{path}: unknown field(s) {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        try:
            return cls._from_values(values)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: {type(err).__name__}: {err}") from None

    @classmethod
    def _from_values(cls, values: dict) -> "Preprocess":
        if "reference_0_255" in values:  # an export of before the rename
            values["intensity_range"] = "0-255" if values.pop("reference_0_255") else "0-1"
        if "analysis" not in values:  # an export of before the clinical layer: the dataset's built-in analysis
            values["analysis"] = _builtin_analysis(values.get("dataset", ""))
        values["input_size"] = tuple(values["input_size"])
        values["mean"], values["std"] = tuple(values["mean"]), tuple(values["std"])
        return cls(**values)


@torch.no_grad()
def fine_heatmaps(model: torch.nn.Module, batch: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
    """The forward pass of every prediction path (evaluation, folder prediction, the Predictor's torch
    backend, TTA, exports): a normalised ``(B, 3, H, W)`` batch -> the fine heatmaps ``(B, K, H, W)``
    in float32 on the model's device, the input in the model's memory layout, under ``precision``'s
    autocast (a resolved precision: fp32, bf16 or fp16)."""
    device = next(model.parameters()).device
    x = to_layout(batch.to(device, non_blocking=True), is_channels_last(model))
    with autocast(device, resolve_precision(precision, device)):
        return model(x).fine.float()


class _FineOnly(torch.nn.Module):
    """The exported graph: normalised batch -> fine heatmaps (float32)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fine_heatmaps(self.model, x)


def _builtin_analysis(dataset: str) -> dict | None:
    from .ceph import get_analysis
    from .data.registry import DATASETS

    spec = DATASETS.get(dataset)
    return get_analysis(spec.analysis).to_dict() if spec is not None and spec.analysis else None


def _analysis_of(spec, cfg, num_landmarks: int) -> dict | None:
    """The run's cephalometric analysis as plain values (an export carries it whole), or None;
    an analysis the data names but that cannot be read, or that needs other landmarks, is an error."""
    from .ceph import get_analysis

    try:
        name = spec.analysis_for(cfg)
    except (OSError, ValueError):  # a generic dataset that is not on this machine
        return None
    if name is None:
        return None
    analysis = get_analysis(name)
    if analysis.num_landmarks != num_landmarks:
        raise ValueError(f"analysis {analysis.name!r} is defined on {analysis.num_landmarks} landmarks; the run "
                         f"predicts {num_landmarks}")
    return analysis.to_dict()


def _preprocess_of(cfg, num_landmarks: int, run_dir: Path, state: dict) -> Preprocess:
    from .data.registry import get_dataset

    spec = get_dataset(cfg.dataset)
    names = _landmark_names(spec, cfg, num_landmarks)
    described = describe_ground_truth(cfg)
    try:
        spacing = spec.fixed_spacing(cfg)
    except (OSError, ValueError):  # a generic dataset that is not on this machine
        spacing = spec.spacing_mm
    return Preprocess(input_size=tuple(cfg.input_size), num_landmarks=num_landmarks, landmark_names=names,
                      decoder=cfg.decoder, targets=cfg.targets, intensity_range=cfg.intensity_range, contrast=cfg.contrast,
                      dataset=cfg.dataset,
                      spacing_rule=described.get("spacing", ""),
                      spacing_mm=spacing, run=run_dir.name,
                      source={"checkpoint": "checkpoints/best.pt", "selected_epoch": int(state.get("epoch", -1)) + 1},
                      analysis=_analysis_of(spec, cfg, num_landmarks))


def _landmark_names(spec, cfg, k: int) -> list[str]:
    """The dataset's landmark names (a generic CSV's from its dataset.json), else 1..K."""
    try:
        names = spec.names(cfg)
    except (OSError, ValueError):  # a generic dataset that is not on this machine: numbered names
        names = None
    return list(names) if names is not None and len(names) == k else [str(i + 1) for i in range(k)]


def _load_run_model(run_dir: Path):
    model, cfg, state = load_checkpoint(selected_checkpoint(run_dir), device="cpu")  # one read of best.pt
    folder = run_dir if run_dir.is_dir() else run_dir.parent.parent
    num_landmarks = int(state.get("num_landmarks", model.num_landmarks))  # the model's heatmaps may be fewer (targets)
    return model.float().eval(), cfg, _preprocess_of(cfg, num_landmarks, folder, state)


def export_run(run_dir: str | Path, format: str = "onnx", out_dir: str | Path | None = None,
               input_size: tuple[int, int] | None = None, opset: int = 17) -> Path:
    """Export a run's selected model; returns the model file (``model.onnx`` or ``model.xml``) in
    ``out_dir`` (default ``<run>/export/``, the folder the run's own backends use; at another input
    size ``<run>/export-<H>x<W>/``), with ``preprocess.json`` beside it, which records what the
    export was made from (input size, the checkpoint's SHA-256, format). The batch axis is dynamic;
    ``input_size`` (H, W) exports another input size of the fully convolutional model."""
    run_dir = Path(run_dir)
    model, cfg, pre = _load_run_model(run_dir)
    model = model.to(memory_format=torch.contiguous_format)
    if input_size is not None:
        pre.input_size = (int(input_size[0]), int(input_size[1]))
    pre.source["checkpoint_sha256"] = sha256_file(selected_checkpoint(run_dir))
    folder = run_dir if run_dir.is_dir() else run_dir.parent
    own_size = tuple(pre.input_size) == tuple(cfg.input_size)
    out = Path(out_dir) if out_dir is not None else folder / (
        "export" if own_size else f"export-{pre.input_size[0]}x{pre.input_size[1]}")
    out.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(1, 3, *pre.input_size)
    graph = _FineOnly(model).eval()
    with torch.no_grad(), warnings.catch_warnings():
        # the tracers' FutureWarning / TracerWarning / DeprecationWarning say nothing about this graph
        # (static shapes are what an export at one input size is): not printed at every final evaluation
        for category in (FutureWarning, DeprecationWarning, torch.jit.TracerWarning):
            warnings.simplefilter("ignore", category)
        path = _export_graph(graph, example, out, format, pre, opset)
    pre.source["format"] = format
    pre.save(out / "preprocess.json")
    return path


def _export_graph(graph: torch.nn.Module, example: torch.Tensor, out: Path, format: str, pre: "Preprocess",
                  opset: int) -> Path:
    if format == "onnx":
        path = out / "model.onnx"
        with torch.no_grad():
            torch.onnx.export(graph, (example,), str(path), input_names=["image"], output_names=["fine"],
                              dynamic_axes={"image": {0: "batch"}, "fine": {0: "batch"}}, opset_version=opset,
                              dynamo=False)
    elif format == "openvino":
        ov = _require("openvino")
        path = out / "model.xml"
        with torch.no_grad():
            converted = ov.convert_model(graph, example_input=example, input=[(-1, 3, *pre.input_size)])
        ov.save_model(converted, str(path), compress_to_fp16=False)  # the weights stay fp32
    else:
        raise ValueError(f"format must be 'onnx' or 'openvino', got {format!r}")
    return path


def quantize_run(run_dir: str | Path, calibration: Sequence[np.ndarray], out_dir: str | Path | None = None) -> Path:
    """int8 post-training quantisation (OpenVINO NNCF) of a run's exported OpenVINO model, calibrated
    on ``calibration``: normalised (1, 3, H, W) float32 inputs, which must come from training images
    only (never validation or test). Writes ``model.xml`` + ``preprocess.json`` into ``out_dir``
    (default ``<run>/export_int8/``), the calibration recorded in it; an explicit option, never a default."""
    nncf, ov = _require("nncf"), _require("openvino")
    run_dir = Path(run_dir)
    base = (run_dir if run_dir.is_dir() else run_dir.parent)
    out = Path(out_dir) if out_dir is not None else base / "export_int8"
    fp32 = export_run(run_dir, "openvino", out_dir=out / "fp32")
    out.mkdir(parents=True, exist_ok=True)
    items = [np.ascontiguousarray(x, dtype=np.float32) for x in calibration]
    if not items:
        raise ValueError("int8 calibration needs at least one training image")
    quantized = nncf.quantize(ov.Core().read_model(str(fp32)), nncf.Dataset(items), subset_size=len(items))
    path = out / "model.xml"
    ov.save_model(quantized, str(path), compress_to_fp16=False)
    pre = Preprocess.load(fp32.parent / "preprocess.json")
    pre.source.update(format="openvino-int8", calibration_images=len(items), calibration="training images only")
    pre.save(out / "preprocess.json")
    return path


# --- backends: (B, 3, H, W) float32 -> (B, K, H, W) float32 ---------------------------------------

class TorchBackend:
    name = "torch"

    def __init__(self, model: torch.nn.Module, channels_last: bool = True, device: str = "auto") -> None:
        self.device = resolve_device(device)
        self.model = model.eval().to(self.device)
        self.channels_last = channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.precision = "fp32"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return fine_heatmaps(self.model, torch.from_numpy(batch)).cpu().numpy()


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, path: Path, threads: int | None = None) -> None:
        ort = _require("onnxruntime")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or torch.get_num_threads()
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.precision = "fp32"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(["fine"], {"image": np.ascontiguousarray(batch, dtype=np.float32)})[0]


class OpenVINOBackend:
    name = "openvino"
    PRECISIONS = {"fp32": "f32", "bf16": "bf16"}

    def __init__(self, path: Path, precision: str = "fp32", threads: int | None = None) -> None:
        ov = _require("openvino")
        if precision not in self.PRECISIONS:
            raise ValueError(f"OpenVINO precision must be one of {list(self.PRECISIONS)}, got {precision!r}")
        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": self.PRECISIONS[precision], "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads())}
        self.compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        applied = self.compiled.get_property("INFERENCE_PRECISION_HINT")  # what OpenVINO applies, read back
        name = applied.get_type_name() if hasattr(applied, "get_type_name") else str(applied)
        self.precision = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}.get(name, name)
        self.request = self.compiled.create_infer_request()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        result = self.request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)})
        return np.asarray(next(iter(result.values())), dtype=np.float32)


def make_backend(backend: str, model: torch.nn.Module | None = None, export_path: Path | None = None,
                 precision: str = "fp32", threads: int | None = None, device: str = "auto"):
    """The backend ``backend`` over a loaded model (torch, on ``device``) or an exported file (the
    others, on the CPU)."""
    if backend == "torch":
        if model is None:
            raise ValueError("the torch backend needs the model (Predictor.from_run)")
        return TorchBackend(model, device=device)
    if backend == "onnxruntime":
        return OnnxRuntimeBackend(export_path, threads)
    if backend == "openvino":
        return OpenVINOBackend(export_path, precision, threads)
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


def resolve_backend(backend: str, device: str = "auto") -> str:
    """``"auto"``: OpenVINO with f32 pinned where it is installed (it matches eager PyTorch fp32 within
    0.01 px and was the fastest exact backend on the CPUs measured: ``benchmarks/inference_backends.py``,
    ``results/benchmarks/inference_backends_*.json``, speeds with their CPU flags); else ONNX Runtime;
    else torch. On a CUDA device: torch. Any other name is returned unchanged."""
    if backend != "auto":
        return backend
    if resolve_device(device).type == "cuda":
        return "torch"
    for name in ("openvino", "onnxruntime"):
        try:
            _require(name)
            return name
        except MissingExtra:
            continue
    return "torch"


def heatmap_backend(run_dir: str | Path, backend: str, precision: str = "fp32", threads: int | None = None,
                    device: str = "auto"):
    """(backend, preprocess) for a run: exported once into ``<run>/export/`` where a non-torch
    backend needs a file (re-exported when ``best.pt`` is newer than the export). ``"auto"``
    (:func:`resolve_backend`) falls back to torch, with a warning, if the export or compilation fails."""
    run_dir = Path(run_dir)
    selected_checkpoint(run_dir)  # a missing run or checkpoint is one error, before any backend is tried
    chosen = resolve_backend(backend, device)
    if backend == "auto" and chosen != "torch":
        try:
            return heatmap_backend(run_dir, chosen, precision, threads, device)
        except (RuntimeError, OSError, ValueError) as err:  # an export or compile failure: stay correct, be slower
            warnings.warn(f"backend {chosen!r} failed ({str(err).splitlines()[0][:200]}); using torch", RuntimeWarning,
                          stacklevel=2)
            chosen = "torch"
    backend = chosen
    if backend == "torch":
        model, _, pre = _load_run_model(run_dir)
        return make_backend("torch", model, device=device), pre
    fmt = "onnx" if backend == "onnxruntime" else "openvino"
    folder = (run_dir if run_dir.is_dir() else run_dir.parent) / "export"
    path = folder / ("model.onnx" if fmt == "onnx" else "model.xml")
    if not _export_matches(path, run_dir):
        _require(backend)
        path = export_run(run_dir, fmt, out_dir=folder)
    # an export made from this checkpoint at the run's input size serves alone: the checkpoint is not loaded
    try:
        impl = make_backend(backend, export_path=path, precision=precision, threads=threads)
    except Exception:  # a damaged model file (truncated by a kill or a full disk): export again, once
        path = export_run(run_dir, fmt, out_dir=folder)
        impl = make_backend(backend, export_path=path, precision=precision, threads=threads)
    return impl, Preprocess.load(folder / "preprocess.json")


def _export_matches(model_file: Path, run_dir: Path) -> bool:
    """True where ``model_file`` and its ``preprocess.json`` were exported from the run's selected
    checkpoint at the run's own input size (an export at another size, of another checkpoint, or
    made before exports recorded their checkpoint, is not the run's)."""
    if not model_file.is_file() or (model_file.suffix == ".xml" and not model_file.with_suffix(".bin").is_file()):
        return False
    try:
        pre = Preprocess.load(model_file.parent / "preprocess.json")
    except (OSError, ValueError, TypeError):
        return False
    if pre.source.get("checkpoint_sha256") != sha256_file(selected_checkpoint(run_dir)):
        return False
    config = (run_dir if run_dir.is_dir() else run_dir.parent.parent) / "config.json"
    if config.is_file():
        size = read_json_record(config).get("input_size")
        return size is None or tuple(size) == tuple(pre.input_size)
    return True


# --- the Predictor ----------------------------------------------------------------------------------

class Predictor:
    """Landmarks in original pixels from images, with any backend.

    >>> p = Predictor.from_run("results/isbi2015_cpu/isbi2015_cpu", backend="onnxruntime")  # doctest: +SKIP
    >>> table = p.predict("path/to/001.bmp")   # one row per landmark: x, y (px), x_mm, y_mm, peak
    """

    def __init__(self, backend, preprocess: Preprocess, batch_size: int = 8) -> None:
        from .ceph import Analysis

        self.backend, self.pre, self.batch_size = backend, preprocess, batch_size
        self.codec = preprocess.codec()
        self.analysis = (Analysis.from_dict(preprocess.analysis, where="preprocess.json analysis")
                         if preprocess.analysis else None)

    @classmethod
    def from_run(cls, run_dir: str | Path, backend: str = "auto", precision: str = "fp32",
                 threads: int | None = None, batch_size: int = 8, device: str = "auto") -> "Predictor":
        impl, pre = heatmap_backend(run_dir, backend, precision, threads, device)
        return cls(impl, pre, batch_size)

    @classmethod
    def from_export(cls, path: str | Path, precision: str = "fp32", threads: int | None = None,
                    batch_size: int = 8) -> "Predictor":
        """An exported ``model.onnx`` (ONNX Runtime) or ``model.xml`` (OpenVINO) with its
        ``preprocess.json`` beside it; no checkpoint or farnet config needed."""
        path = Path(path)
        pre = Preprocess.load(path.parent / "preprocess.json")
        backend = "onnxruntime" if path.suffix == ".onnx" else "openvino"
        return cls(make_backend(backend, export_path=path, precision=precision, threads=threads), pre, batch_size)

    @property
    def description(self) -> dict:
        """Which backend and precision computed the heatmaps (recorded with every result)."""
        return {"backend": self.backend.name, "precision": self.backend.precision, "decoder": self.pre.decoder}

    def decode(self, heatmaps: np.ndarray, image_hw: Sequence[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
        """(B, K, 2) points in original pixels and (B, K) peaks from (B, K, h, w) heatmaps (fp32)."""
        return self.codec.decode_original(torch.from_numpy(np.ascontiguousarray(heatmaps, dtype=np.float32)), image_hw)

    def predict_arrays(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(N, K, 2) points in original pixels and (N, K) peaks of (H, W) uint8 images."""
        points, peaks = [], []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start:start + self.batch_size]
            batch = np.stack([self.pre.image_to_input(im) for im in chunk]).astype(np.float32)
            try:
                heatmaps = self.backend(batch)
            except Exception as err:  # noqa: BLE001 - a runtime's refusal of the input, said with what was given
                raise ValueError(f"the {self.backend.name} model refused an input batch of shape {batch.shape} "
                                 f"(preprocess.json input_size {list(self.pre.input_size)}): "
                                 f"{str(err).splitlines()[0][:300]}") from None
            expected = (heatmap_channels(self.pre.targets, self.pre.num_landmarks), *self.pre.input_size)
            if tuple(heatmaps.shape[1:]) != expected:
                raise ValueError(f"the model gives heatmaps of shape {tuple(heatmaps.shape[1:])} (heatmaps, H, W); its "
                                 f"preprocess.json says {expected}: the two files do not belong together")
            p, q = self.decode(heatmaps, [im.shape[:2] for im in chunk])
            points.append(p)
            peaks.append(q)
        return np.concatenate(points), np.concatenate(peaks)

    def predict(self, image: np.ndarray | str | os.PathLike) -> pd.DataFrame:
        """One image (array or file): one row per landmark; where the run has a cephalometric
        analysis, its measurements and classes in ``table.attrs["measurements"]`` (a dict:
        ``{"ANB": 4.1, "ANB_class": 1, ...}``; a DataFrame in attrs would break ``pd.concat``)."""
        array = read_gray(Path(image)) if isinstance(image, (str, os.PathLike)) else gray_uint8(image)
        pts, peak = self.predict_arrays([array])
        name = str(image) if isinstance(image, (str, os.PathLike)) else "array"
        table = self._rows(name, pts[0], peak[0])
        if self.analysis is not None:
            table.attrs["measurements"] = self.measure(pts, [name]).iloc[0].to_dict()
        return table

    def measure(self, points: np.ndarray, images: Sequence[str] | None = None) -> pd.DataFrame:
        """The cephalometric measurements and classes of ``(N, K, 2)`` predicted landmarks (original
        pixels), one row per image: sub-pixel coordinates (``coordinates="float"``, not the
        challenge's truncation, which the benchmark tables use); ValueError without an analysis."""
        from .ceph import measure

        if self.analysis is None:
            raise ValueError(f"run {self.pre.run or '(export)'} ({self.pre.dataset}) has no cephalometric analysis: "
                             "measurements need ISBI's 19 landmarks or a dataset.json that names an analysis")
        return measure(points, self.analysis, self.pre.spacing_mm, coordinates="float",
                       ids=images).rename_axis("image")

    def predict_files(self, files: Iterable[Path], progress: bool = True) -> pd.DataFrame:
        """Many files, batched, with a progress bar: one row per image x landmark."""
        files = list(files)
        tables = []
        for start in tqdm(range(0, len(files), self.batch_size), desc="predict", disable=not progress):
            chunk = files[start:start + self.batch_size]
            pts, peak = self.predict_arrays([read_gray(f) for f in chunk])
            tables += [self._rows(f.name, p, q) for f, p, q in zip(chunk, pts, peak)]
        return pd.concat(tables, ignore_index=True)

    def _rows(self, image: str, pts: np.ndarray, peak: np.ndarray) -> pd.DataFrame:
        table = pd.DataFrame({"image": image, "landmark": np.arange(1, len(pts) + 1),
                              "landmark_name": self.pre.landmark_names, "x": pts[:, 0], "y": pts[:, 1],
                              "peak": peak.astype(float)})
        if self.pre.spacing_mm is not None:
            table["x_mm"], table["y_mm"] = pts[:, 0] * self.pre.spacing_mm, pts[:, 1] * self.pre.spacing_mm
        return table


