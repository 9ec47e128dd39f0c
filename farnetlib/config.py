"""The training/evaluation configuration: plain typed values, validated up front.

Defaults are the paper's setting (reference code): DenseNet121, 800 x 640 input, EWC loss with
base 40, sigma 10 px at full resolution (and 10 px at the half-resolution coarse output), Adam
1e-4, 300 epochs, x0.1 at epoch 200, batch 1, no augmentation, argmax decoding. The validation
split is carved from the training images by ``split_seed`` (fixed across a multi-seed study; ``seed``
drives initialisation and data order only); test splits are evaluated once, after training.

Configs written before ``precision`` existed carry ``amp`` instead; :meth:`TrainConfig.from_dict`
reads them (``amp`` None/True/False -> ``precision`` auto/fp16/fp32) and, since their models had the
narrow fine head, sets ``fine_head_width=64`` so that their checkpoints load.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .backbones import BACKBONES
from .data.io import read_json, write_atomic
from .data.transforms import CONTRASTS, INTENSITY_RANGES
from .data.registry import DATASETS, LEGACY_OPTION_FIELDS, default_data_root, get_dataset
from .heatmaps import (TARGETS, DecoderSpec, HeatmapCodec, check_decoder, decoder_label, decoder_name, farnet_codecs,
                       heatmap_channels)
from .losses import CONFIG_FIELDS as LOSS_CONFIG_FIELDS, LOSSES
from .precision import PRECISIONS

__all__ = ["TrainConfig", "ConfigError", "SECTIONS", "RESUMABLE_FIELDS", "read_json_config", "apply_overrides",
           "compose_config", "is_single_name", "describe_ground_truth"]

# The fields in sections (the flat JSON of every committed config and run folder stays as it is).
# What may change between a run's stretches follows from them: paths, runtime and evaluation options
# may (the data moved, another machine, another decoder for the final evaluation); data, model, loss
# and optimisation may not, except ``epochs`` (a run may be extended).
SECTIONS: dict[str, tuple[str, ...]] = {
    "data": ("dataset", "dataset_options", "ground_truth", "val_count", "split_seed", "missing", "outside", "partial"),
    "model": ("backbone", "weights", "input_size", "intensity_range", "contrast", "fine_head_width", "head_scale"),
    "loss": ("targets", "sigma", "sigma_coarse", "loss", "ewc_base", "coarse_weight", "fine_weight"),
    "optimisation": ("epochs", "batch_size", "optimizer", "lr", "weight_decay", "milestones", "lr_gamma", "augment",
                     "augment_level", "schedule", "warmup_epochs", "progressive_epochs", "progressive_scale",
                     "eval_every", "seed", "sync_bn"),  # eval_every: which epochs can be selected
    "evaluation": ("test_splits", "decoder", "eval_batch_size", "eval_channels_last", "eval_precision", "backend",
                   "backend_precision"),
    "runtime": ("device", "precision", "channels_last", "compile", "cudnn_benchmark", "finite_check_every",
                "num_workers", "threads", "time_limit"),
    "paths": ("root", "cache_dir", "results_dir", "run_name"),
}
RESUMABLE_SECTIONS = ("evaluation", "runtime", "paths")
RESUMABLE_FIELDS = frozenset(name for sec in RESUMABLE_SECTIONS for name in SECTIONS[sec]) | {"epochs"}


class ConfigError(ValueError):
    """A bad configuration value; the message names the field."""


# Fields that take one of a few values: field -> (the values, what the error says).
CHOICES: dict[str, tuple[tuple, str]] = {
    "intensity_range": (tuple(INTENSITY_RANGES), f"must be one of {list(INTENSITY_RANGES)} ('0-1': the paper; "
                                                 "'0-255': the reference code)"),
    "contrast": (tuple(CONTRASTS), f"must be one of {list(CONTRASTS)}"),
    "ground_truth": (("mean", "senior", "junior"), "must be 'mean', 'senior' or 'junior'"),
    "backbone": (tuple(BACKBONES), f"must be one of {', '.join(BACKBONES)}"),
    "loss": (tuple(LOSSES), f"must be one of {list(LOSSES)}"),
    "targets": (tuple(TARGETS), f"must be one of {list(TARGETS)} ('landmarks': the paper)"),
    "optimizer": (("adam", "adamw", "sgd"), "must be 'adam', 'adamw' or 'sgd'"),
    "missing": (("raise", "skip"), "must be 'raise' or 'skip'"),
    "partial": (("warn", "raise"), "must be 'warn' or 'raise'"),
    "outside": (("raise", "keep"), "must be 'raise' or 'keep'"),
    "precision": (tuple(PRECISIONS), f"must be one of {list(PRECISIONS)}"),
    "eval_precision": (tuple(PRECISIONS[1:]), f"must be one of {list(PRECISIONS[1:])}"),
    "backend": (("auto", "torch", "onnxruntime", "openvino"), "must be 'auto', 'torch', 'onnxruntime' or 'openvino'"),
    "backend_precision": (("fp32", "bf16"), "must be 'fp32' or 'bf16'"),
    "channels_last": ((True, False, "auto"), "must be true, false or 'auto'"),
    "augment_level": (("mild", "standard", "strong"), "must be 'mild', 'standard' or 'strong'"),
    "schedule": (("step", "cosine"), "must be 'step' or 'cosine'"),
}


@dataclass
class TrainConfig:
    # data
    dataset: str = "synthetic"  # a name in farnetlib.data.registry.DATASETS ("csv": your own data)
    root: str | None = None
    dataset_options: dict = field(default_factory=dict)  # the dataset's own options, defaults filled in (see below)
    ground_truth: str = "mean"  # ISBI: mean | senior | junior
    test_splits: list[str] | None = None  # None: the dataset's default test splits
    val_count: int = 20  # validation images carved from the training images (fixed by split_seed)
    split_seed: int = 0  # which training images are validation (and the synthetic data); not `seed`
    missing: str = "raise"  # hand/spine: "skip" listed images that are absent
    outside: str = "raise"  # labels outside their image: "raise" at start-up, or "keep" them as annotated
    partial: str = "warn"  # a split with fewer images than the dataset's official count: "warn" or "raise"
    cache_dir: str | None = None  # on-disk .npy cache of resized images (None: $FARNET_CACHE_DIR, if set)
    # model
    backbone: str = "densenet121"
    weights: str | None = None  # None | "imagenet" | path to a backbone state dict
    input_size: tuple[int, int] | None = None  # (H, W), multiples of 32; None: the dataset's default
    intensity_range: str = "0-1"  # values that meet the ImageNet mean/std; "0-255": the reference code's
    contrast: str = "none"  # "clahe": scikit-image adaptive histogram equalisation at the input size (beyond the paper)
    fine_head_width: int | None = None  # None: the reference width 64 + 32 + K; 64: farnet <= 0.1
    head_scale: float = 1.0  # multiplier of the FARNet head's widths (aggregation, refinement); 1 = the paper (tests: 0.125)
    # targets and loss
    targets: str = "landmarks"  # one heatmap per landmark (FARNet) | "spine_corners": 4 corner-type heatmaps (beyond the paper)
    sigma: float = 10.0  # Gaussian SD in pixels of the fine (input-size) heatmap
    sigma_coarse: float | None = None  # None: same value in coarse pixels, as the reference code
    loss: str = "ewc"
    ewc_base: float = 40.0
    coarse_weight: float = 1.0
    fine_weight: float = 1.0
    # optimisation
    epochs: int = 300
    batch_size: int = 1
    optimizer: str = "adam"  # adam | adamw | sgd
    lr: float = 1e-4
    weight_decay: float = 0.0
    milestones: list[int] = field(default_factory=lambda: [200])
    lr_gamma: float = 0.1
    augment: bool = False  # reference: no augmentation; recommended: True
    augment_level: str = "standard"  # mild | standard | strong (the ranges of farnetlib.data.AUGMENT_LEVELS)
    schedule: str = "step"  # step (reference: x lr_gamma at each milestone) | cosine (per step, to 0)
    warmup_epochs: float = 0.0  # linear warm-up of the lr from 0 over this many epochs (per step)
    progressive_epochs: int = 0  # the first epochs at progressive_scale x input_size (sigma scaled alike)
    progressive_scale: float = 0.5
    # evaluation
    decoder: DecoderSpec = "argmax"  # a name (argmax: reference; quadratic, dark: sub-pixel) or {"name": ..., parameters}
    eval_every: int = 1
    eval_batch_size: int = 8  # batch size of validation/test prediction (memory only, not results)
    eval_channels_last: bool = True  # final/stand-alone evaluation in channels_last (faster inference on CPU too)
    eval_precision: str = "fp32"  # validation/test prediction; fp32: bf16 heatmaps blunt the sub-pixel decoders
    backend: str = "auto"  # final evaluation: auto (OpenVINO f32 where installed, parity-tested) | torch | onnxruntime | openvino
    backend_precision: str = "fp32"  # openvino only: fp32 (pinned) | bf16 (an explicit choice)
    # runtime
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto (CUDA: bf16; CPU: measured, see engine/autotune.py) | fp32 | bf16 | fp16
    channels_last: bool | str = False  # training in torch.channels_last; "auto": measured with precision
    compile: bool = False  # torch.compile the training forward/backward (compiles in the first steps)
    cudnn_benchmark: bool = True  # CUDA: let cuDNN pick the fastest kernels for the fixed input size
    sync_bn: bool = False  # torchrun: SyncBatchNorm across processes (batch 1 per GPU)
    finite_check_every: int = 50  # steps between checks that the loss is finite (each check syncs)
    num_workers: int = 0
    threads: int | None = None  # torch CPU threads (None: torch default)
    time_limit: float | None = None  # minutes for this call: stop (resumably) before an epoch that would not fit
    run_name: str | None = None
    results_dir: str = "runs"  # git-ignored; the committed reference runs live under results/

    def __post_init__(self) -> None:
        self.check_types()
        if self.input_size is None and self.dataset in DATASETS:
            self.input_size = DATASETS[self.dataset].input_size
        self.input_size = tuple(self.input_size) if self.input_size is not None else None  # type: ignore[assignment]
        self.milestones = list(self.milestones)
        self.validate()

    def check_types(self) -> None:
        """Every field has its declared type (JSON ``"2"`` is not an int, ``true`` is not a number)."""
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            value = getattr(self, f.name)
            if not _has_type(value, hints[f.name]):
                raise ConfigError(f"config field {f.name!r} = {value!r}: must be {_describe_type(hints[f.name])}")

    def validate(self) -> None:
        """Every field checked; the first bad one is a ConfigError naming it, its value and what it may be."""
        self._check_finite()
        self._check_dataset()
        self._check_choices()
        self._check_decoder_and_targets()
        self._check_numbers()

    def _bad(self, name: str, why: str) -> ConfigError:
        return ConfigError(f"config field {name!r} = {getattr(self, name)!r}: {why}")

    def _check_finite(self) -> None:
        for f in fields(self):  # Infinity / NaN slip through comparisons and are not JSON
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise self._bad(f.name, "must be a finite number")

    def _check_dataset(self) -> None:
        """The dataset, its root, its splits and its options (types, then the spec's own check)."""
        bad = self._bad
        if self.dataset not in DATASETS:
            raise bad("dataset", f"must be one of {list(DATASETS)} ('csv': your own images and landmarks.csv)")
        spec = DATASETS[self.dataset]
        if spec.needs_root and not self.root:
            raise bad("root", f"dataset {self.dataset!r} needs the path of its folder")
        if self.test_splits is not None and spec.splits is not None and any(sp not in spec.splits
                                                                            for sp in self.test_splits):
            raise bad("test_splits", f"must be a list of {self.dataset} splits {list(spec.splits)} (or null: the defaults)")
        if not isinstance(self.dataset_options, dict):
            raise bad("dataset_options", "must be a JSON object of the dataset's options")
        unknown = set(self.dataset_options) - set(spec.options)
        if unknown:
            raise bad("dataset_options", f"unknown option(s) {sorted(unknown)} for dataset {self.dataset!r}; "
                                         f"known: {sorted(spec.options) or 'none'}")
        for key, value in self.dataset_options.items():
            types_ = spec.options[key][0]
            if not isinstance(value, types_) or (isinstance(value, bool) and bool not in types_):
                raise bad("dataset_options", f"option {key!r} = {value!r} must be "
                                             f"{' or '.join('null' if t is type(None) else t.__name__ for t in types_)}")
        self.dataset_options = _with_defaults(self.dataset_options, spec.options)
        problem = spec.check_options(self.dataset_options) if spec.check_options is not None else None
        if problem:
            raise bad("dataset_options", problem)

    def _check_choices(self) -> None:
        """The fields that take one of a few values (:data:`CHOICES`)."""
        for name, (allowed, why) in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise self._bad(name, why)
        if self.device != "auto" and not (self.device == "cpu" or self.device.startswith("cuda")):
            raise self._bad("device", "must be 'auto', 'cpu' or 'cuda[:N]'")

    def _check_decoder_and_targets(self) -> None:
        try:
            check_decoder(self.decoder)
        except ValueError as err:
            raise self._bad("decoder", str(err)) from None
        if (self.targets == "spine_corners") != (decoder_name(self.decoder) == "spine_corners"):
            raise self._bad("targets" if self.targets == "spine_corners" else "decoder",
                            "targets 'spine_corners' (one heatmap per corner type of a spine) are decoded by decoder "
                            "'spine_corners', and that decoder decodes nothing else: set both or neither")

    def _check_numbers(self) -> None:
        """Sizes, counts, rates and the schedule's epochs."""
        bad = self._bad
        if self.input_size is None or len(self.input_size) != 2 or any(int(s) <= 0 or int(s) % 32 for s in self.input_size):
            raise bad("input_size", "must be (H, W), both positive multiples of 32")
        for name in ("epochs", "batch_size", "eval_every", "eval_batch_size", "finite_check_every"):
            if int(getattr(self, name)) < 1:
                raise bad(name, "must be >= 1")
        for name in ("sigma", "lr"):
            if not float(getattr(self, name)) > 0:
                raise bad(name, "must be > 0")
        if self.sigma_coarse is not None and not self.sigma_coarse > 0:
            raise bad("sigma_coarse", "must be > 0 or None")
        if self.val_count < 1:
            raise bad("val_count", "must be >= 1 (models are selected on validation images only)")
        if self.num_workers < 0:
            raise bad("num_workers", "must be >= 0")
        if not 0 <= float(self.warmup_epochs) < int(self.epochs):
            raise bad("warmup_epochs", "must be >= 0 and below epochs")
        if not 0 <= int(self.progressive_epochs) < int(self.epochs):
            raise bad("progressive_epochs", "must be >= 0 and below epochs (the last epochs train at input_size)")
        if not 0 < float(self.progressive_scale) <= 1:
            raise bad("progressive_scale", "must be in (0, 1]")
        if self.time_limit is not None and not float(self.time_limit) > 0:
            raise bad("time_limit", "must be > 0 (minutes) or None")
        if not self.head_scale > 0:
            raise bad("head_scale", "must be > 0 (1 = the paper's widths)")
        if self.fine_head_width is not None and int(self.fine_head_width) < 1:
            raise bad("fine_head_width", "must be >= 1 or None (the reference width)")
        if self.run_name is not None and not is_single_name(self.run_name):
            raise bad("run_name", "must be a single folder name (no '/', not '.' or '..'): runs stay inside results_dir")

    @property
    def splits_to_test(self) -> list[str]:
        return list(self.test_splits) if self.test_splits is not None else get_dataset(self.dataset).test_splits(self)

    def stage(self, epoch: int) -> tuple[tuple[int, int], float, float]:
        """(input size, fine sigma, coarse sigma) of training epoch ``epoch`` (0-based).

        The first ``progressive_epochs`` train at ``progressive_scale`` x ``input_size`` (sides
        rounded to multiples of 32, at least 64 so that the deepest features keep 2 x 2 pixels),
        sigma scaled by the mean side ratio so that a Gaussian covers the same anatomy; later
        epochs at ``input_size``. Validation and test always run at ``input_size``."""
        sigma_coarse = self.sigma_coarse or self.sigma
        if epoch >= self.progressive_epochs:
            return self.input_size, self.sigma, sigma_coarse
        size = tuple(max(64, 32 * round(s * self.progressive_scale / 32)) for s in self.input_size)
        ratio = (size[0] / self.input_size[0] + size[1] / self.input_size[1]) / 2
        return size, self.sigma * ratio, sigma_coarse * ratio

    def codecs(self, num_landmarks: int, epoch: int | None = None) -> tuple[HeatmapCodec, HeatmapCodec]:
        """FARNet's (coarse, fine) codecs for ``num_landmarks`` landmarks at training epoch ``epoch``'s
        input size and sigma (:meth:`stage`), or at ``input_size`` (``epoch`` None: validation, test)."""
        size, sigma, sigma_coarse = self.stage(epoch if epoch is not None else self.progressive_epochs)
        return farnet_codecs(size, self.decoder, self.targets, num_landmarks, sigma, sigma_coarse)

    def loss_options(self) -> dict:
        """The parameters of the chosen loss, from their config fields (``losses.CONFIG_FIELDS``)."""
        return {param: getattr(self, name) for param, name in LOSS_CONFIG_FIELDS.get(self.loss, {}).items()}

    def heatmap_channels(self, num_landmarks: int) -> int:
        """How many heatmaps the network outputs for ``num_landmarks`` landmarks (``targets``)."""
        try:
            return heatmap_channels(self.targets, num_landmarks)
        except ValueError as err:
            raise ConfigError(f"config field 'targets' = {self.targets!r}: {err}") from None

    @property
    def radii(self) -> list[float]:
        return get_dataset(self.dataset).radii(self)

    def to_dict(self) -> dict:
        return asdict(self)

    def section(self, name: str) -> dict:
        """The fields of one section (``SECTIONS``: data, model, loss, optimisation, evaluation,
        runtime, paths) and their values."""
        if name not in SECTIONS:
            raise KeyError(f"unknown section {name!r}; sections: {list(SECTIONS)}")
        return {f: getattr(self, f) for f in SECTIONS[name]}

    def default_run_name(self, data_sha256: str | None = None) -> str:
        """The run folder's name when ``run_name`` is None: dataset, backbone, seed and a hash of
        every field that changes what is trained, so that the same command finds (and resumes) the
        same folder and another config gets another one; with ``data_sha256`` (training does: the
        data's identity, :func:`farnetlib.engine.sources.data_identity`) also its first 8 digits,
        so that the same config on other data gets another folder."""
        trained = {k: v for k, v in sorted(self.to_dict().items()) if k not in RESUMABLE_FIELDS
                   and not (k in _LATER_FIELDS and v == _LATER_FIELDS[k])}  # names from before a field stay the same
        trained.update(_legacy_option_fields(self.dataset, trained.pop("dataset_options")))
        trained["reference_0_255"] = trained.pop("intensity_range") == "0-255"  # and from before the renames
        trained["decoder_width"] = trained.pop("head_scale")
        digest = hashlib.sha1(json.dumps(trained, sort_keys=True).encode()).hexdigest()[:8]
        name = f"{self.dataset}-{self.backbone}-s{self.seed}-{digest}"
        return f"{name}-d{data_sha256[:8]}" if data_sha256 else name

    def save(self, path: str | Path) -> None:
        write_atomic(path, json.dumps(self.to_dict(), indent=2))

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        values = _upgrade_legacy(values)
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ConfigError(f"unknown config field(s) {sorted(unknown)}; known fields: {sorted(known)}")
        return cls(**values)

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        """A config file; errors name the file (and the field, or the JSON syntax error's line)."""
        try:
            return cls.from_dict(read_json_config(path))
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None


def describe_ground_truth(cfg: TrainConfig) -> dict:
    """What every reported number must carry: dataset, ground truth, spacing, unit and SDR radii."""
    return {"dataset": cfg.dataset, "input_size_hw": list(cfg.input_size), "decoder": decoder_label(cfg.decoder),
            **get_dataset(cfg.dataset).describe(cfg), "radii": cfg.radii}


def is_single_name(name: str) -> bool:
    """True for a name that is one path component: not empty, ``.`` or ``..``, no separator, no NUL."""
    return bool(name) and name not in (".", "..") and "/" not in name and os.sep not in name and "\0" not in name


def apply_overrides(values: dict, overrides: dict) -> dict:
    """``values`` (a config's fields) with ``overrides`` applied; a key ``dataset_options.NAME``
    changes one dataset option and keeps the others."""
    out = dict(values)
    for key, value in overrides.items():
        if key.startswith("dataset_options."):
            out["dataset_options"] = {**(out.get("dataset_options") or {}), key.split(".", 1)[1]: value}
        else:
            out[key] = value
    return out


def compose_config(path: str | Path | None = None, overrides: dict | None = None, root: str | None = None) -> TrainConfig:
    """A config file (or none: the defaults) with ``overrides``; ``root`` replaces the file's, and a
    dataset that needs a folder and has none gets ``../shared/data/<dataset>`` where that exists (what
    the notebooks do with their ``config_file``, ``overrides`` and ``root`` parameters)."""
    values = apply_overrides(read_json_config(path) if path else {}, overrides or {})
    if root:
        values["root"] = root
    dataset = values.get("dataset", "synthetic")
    if not values.get("root") and dataset in DATASETS and DATASETS[dataset].needs_root:
        values["root"] = default_data_root(dataset)
    try:
        return TrainConfig.from_dict(values)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}" if path else str(err)) from None


def read_json_config(path: str | Path) -> dict:
    """The JSON object in a config file; a missing file or bad JSON is a ``ConfigError`` naming it."""
    values = read_json(path, ConfigError, "config file")
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: a config file holds one JSON object of fields, not {type(values).__name__}")
    return values


def _has_type(value, hint) -> bool:
    """Whether ``value`` (as read from JSON or given in Python) fits the annotation ``hint``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_has_type(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is dict:
        return isinstance(value, dict)
    if origin is tuple:
        return isinstance(value, (list, tuple)) and len(value) == len(args) and all(map(_has_type, value, args))
    if origin is list:
        return isinstance(value, (list, tuple)) and all(_has_type(v, args[0]) for v in value)
    return True


def _describe_type(hint) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe_type(a) for a in args)
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null",
             dict: "a JSON object"}
    if hint in names:
        return names[hint]
    if origin is tuple:
        return f"a list of {len(args)} ({', '.join(_describe_type(a) for a in args)})"
    if origin is list:
        return "a list of " + {int: "integers", float: "numbers", str: "strings"}.get(args[0], str(args[0]))
    return str(hint)


# fields added after run names were first hashed: at these defaults they leave a name unchanged
_LATER_FIELDS = {"contrast": "none", "targets": "landmarks"}


def _with_defaults(options: dict, schema: dict) -> dict:
    """``options`` with every option of the dataset's schema present (tuples as lists, as in JSON)."""
    out = {key: default for key, (_, default) in schema.items()}
    out.update(options)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


# the flat fields' defaults are their options' defaults (derived, so the two cannot drift apart)
_LEGACY_DEFAULTS = {flat: DATASETS[owner].options[option][1] for flat, (owner, option) in LEGACY_OPTION_FIELDS.items()}


def _legacy_option_fields(dataset: str, options: dict) -> dict:
    """The options as the flat fields that run names were hashed over before they were options (every
    dataset's config had them all), plus, as ``dataset_options``, the others that differ from the default."""
    out = dict(_LEGACY_DEFAULTS)
    legacy = {opt: flat for flat, (owner, opt) in LEGACY_OPTION_FIELDS.items() if owner == dataset}
    rest = {}
    schema = DATASETS[dataset].options
    for key, value in options.items():
        if key in legacy:
            out[legacy[key]] = value
        elif value != schema[key][1]:
            rest[key] = value
    if rest:
        out["dataset_options"] = rest
    return out


def _upgrade_legacy(values: dict) -> dict:
    """A config dict of farnet 0.1 (with ``amp``, narrow fine head), with ``reference_0_255`` (now
    ``intensity_range``) or with flat dataset fields (``hand_fold``, ``synthetic_train``, ...: now
    ``dataset_options``) in today's fields."""
    flat = [k for k in values if k in LEGACY_OPTION_FIELDS]
    if flat:
        values = dict(values)
        options = dict(values.get("dataset_options") or {})
        for key in flat:
            owner, option = LEGACY_OPTION_FIELDS[key]
            value = values.pop(key)
            if owner == values.get("dataset", "synthetic"):  # (a --set hand_fold=2 overrides the file's fold)
                options[option] = value
        values["dataset_options"] = options
    if "decoder_width" in values:  # the name before head_scale (it read as the heatmap decoder's)
        values = dict(values)
        if "head_scale" in values:
            raise ConfigError("config fields 'decoder_width' and 'head_scale' are one field (head_scale is its name now): "
                              "keep head_scale")
        values["head_scale"] = values.pop("decoder_width")
    if "reference_0_255" in values:
        values = dict(values)
        flag = values.pop("reference_0_255")
        if not isinstance(flag, bool):
            raise ConfigError(f"config field 'reference_0_255' = {flag!r}: must be true or false")
        values.setdefault("intensity_range", "0-255" if flag else "0-1")
    if "amp" not in values:
        return values
    values = dict(values)
    amp = values.pop("amp")
    values.setdefault("precision", {None: "auto", True: "fp16", False: "fp32"}[amp])
    values.setdefault("fine_head_width", 64)
    return values
