"""Shared test helpers (imported by the test modules; pytest puts tests/ on sys.path)."""
from __future__ import annotations

import os

from farnetlib.engine import TrainConfig

# CPU threads per test process: the cores shared among the pytest-xdist workers (`make test` runs
# `-n auto`), at most 2 as on the 2-core CI machines. Tests pass it to every training and notebook
# so that two workers do not each start two threads on two cores.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = max(1, min(2, (os.cpu_count() or 1) // WORKERS))

TINY_SYNTHETIC = {"train": 10, "test": 4, "landmarks": 5, "image_size": [96, 80]}  # dataset_options


def tiny(tmp_path, **kw) -> TrainConfig:
    """A training config that runs in seconds: synthetic data, 64 x 64, resnet18 with a 1/8-width decoder
    (engine behaviour, not FARNet's arithmetic), 2 epochs, fp32."""
    values = dict(dataset="synthetic", dataset_options=dict(TINY_SYNTHETIC), val_count=3, input_size=(64, 64),
                  sigma=2.0, epochs=2, batch_size=4,
                  backbone="resnet18", lr=1e-3, milestones=[1], results_dir=str(tmp_path), threads=THREADS,
                  precision="fp32", head_scale=0.125, backend="torch")  # auto (an export per run) is tested on its own
    for name in ("head_scale", "backend"):  # the tests run against older code too
        if name not in TrainConfig.__dataclass_fields__:
            del values[name]
    values.update(kw)
    if values["dataset"] != "synthetic" and "dataset_options" not in kw:
        values["dataset_options"] = {}
    return TrainConfig(**values)
