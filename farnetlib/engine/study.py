"""Studies (ablations): named arms that each change a few fields of one base config, trained in turn.

A study file is plain JSON::

    {"study": "isbi2015_ablation",
     "description": "...",
     "base": {<TrainConfig fields shared by every arm, including results_dir>},
     "arms": {"densenet121-ewc-s0": {"backbone": "densenet121"},
              "densenet121-mse-s0": {"loss": "mse"}, ...},
     "anchors": [{"backbone": "densenet121", "loss": "ewc", "split": "test1", "mre": 1.12, ...}, ...]}

``anchors`` (optional) are published numbers to set beside the arms, each with its source.

Each arm is an ordinary run folder ``<results_dir>/<arm name>``: trained, resumed after an
interruption (``checkpoints/last.pt``) and skipped once finished, so a study longer than one session
is finished by running the same command again. Arms may change what is trained (backbone, loss,
seed, ...) but not where it is written (``run_name``, ``results_dir``) nor the data and its
validation split, so that every arm is selected on the same validation images and tested once on
the same test images.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

from ..config import ConfigError, TrainConfig, read_json_config

__all__ = ["Study", "load_study", "train_study", "with_overrides", "FIXED_ACROSS_ARMS"]

# what every arm shares, so that arms differ only in what they study
FIXED_ACROSS_ARMS = ("dataset", "root", "dataset_options", "ground_truth", "val_count", "split_seed", "test_splits",
                     "missing", "outside", "run_name", "results_dir")


@dataclass(frozen=True)
class Study:
    name: str
    description: str
    base: TrainConfig
    arms: dict[str, TrainConfig]
    anchors: tuple[dict, ...] = ()
    launcher: object = None  # the file's ``launcher`` block (farnetlib.engine.dispatch.Launcher), if any

    def run_dir(self, arm: str) -> Path:
        return Path(self.base.results_dir) / arm

    def select(self, names: Sequence[str] | None) -> list[str]:
        """``names`` in study order (all arms when None); an unknown name is an error."""
        if names is None:
            return list(self.arms)
        unknown = [n for n in names if n not in self.arms]
        if unknown:
            raise ConfigError(f"study {self.name!r} has no arm(s) {unknown}; its arms: {list(self.arms)}")
        return [n for n in self.arms if n in set(names)]

    def units(self, names: Sequence[str] | None = None) -> list:
        """The selected arms as :class:`farnetlib.engine.dispatch.Unit` (what the executors run)."""
        from .dispatch import Unit

        return [Unit(n, self.arms[n], self.run_dir(n)) for n in self.select(names)]

    def finished(self) -> list[str]:
        """Arms whose run folder holds its final metrics (trained and tested)."""
        return [a for a in self.arms if (self.run_dir(a) / "metrics.json").is_file()]


def load_study(path: str | Path) -> Study:
    """Read and check a study file: every arm must be a valid config, with a distinct name."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"study file not found: {path}")
    raw = read_json_config(path)  # a syntax error names the file, line and column
    missing = [k for k in ("study", "base", "arms") if k not in raw]
    if missing:
        raise ConfigError(f"study file {path} lacks {missing}")
    if not isinstance(raw["base"], dict) or not isinstance(raw["arms"], dict):
        raise ConfigError(f"study file {path}: 'base' and 'arms' must be JSON objects")
    if not raw["arms"]:
        raise ConfigError(f"study file {path} lists no arms")
    try:
        base = TrainConfig.from_dict(raw["base"])
    except (ConfigError, TypeError) as err:
        raise ConfigError(f"study file {path}, base: {err}") from None
    arms = {}
    for name, changes in raw["arms"].items():
        fixed = sorted(set(changes) & set(FIXED_ACROSS_ARMS))
        if fixed:
            raise ConfigError(f"study file {path}, arm {name!r}: {fixed} must be the same for every arm "
                              f"(set them in 'base')")
        try:
            arms[name] = replace(TrainConfig.from_dict({**raw["base"], **changes}), run_name=name)
        except (ConfigError, TypeError) as err:
            raise ConfigError(f"study file {path}, arm {name!r}: {err}") from None
    launcher = None
    if "launcher" in raw:
        from .dispatch import launcher_from_dict

        if not isinstance(raw["launcher"], dict):
            raise ConfigError(f"study file {path}: 'launcher' must be a JSON object")
        launcher = launcher_from_dict(raw["launcher"], where=f"study file {path}, launcher")
    return Study(name=raw["study"], description=raw.get("description", ""), base=base, arms=arms,
                 anchors=tuple(raw.get("anchors", ())), launcher=launcher)


def with_overrides(study: Study, overrides: dict) -> Study:
    """The same study with ``overrides`` applied to the base and every arm (e.g. a tiny size for tests)."""
    if not overrides:
        return study
    return replace(study, base=TrainConfig.from_dict({**study.base.to_dict(), **overrides}),
                   arms={n: TrainConfig.from_dict({**c.to_dict(), **overrides, "run_name": n})
                         for n, c in study.arms.items()})


def train_study(study: Study, arms: Sequence[str] | None = None, progress: bool = True,
                time_limit: float | None = None) -> list[Path]:
    """Train (or resume, or skip when finished) each selected arm in study order; returns their folders.

    ``time_limit`` (minutes, ``farnet study --time-limit``) covers the whole call: each arm gets what
    the earlier ones left (an arm's own ``time_limit`` field, if any, still bounds that arm). An arm
    that stops before it is finished (a time limit, or SIGTERM/SIGINT: see
    :func:`farnetlib.engine.train`) ends the study call there, so that a stop request stops the
    study and not only its current arm; the same command resumes that arm (the inline executor,
    :func:`farnetlib.engine.dispatch.train_in_turn`)."""
    from .dispatch import train_in_turn

    return train_in_turn(study.units(arms), time_limit, progress, label=f"study {study.name}: ", kind="arm")
