"""The torchrun / DistributedDataParallel path, for real on CPU: two gloo processes at a tiny size."""
import re
import subprocess
import sys

import pandas as pd
import pytest

pytestmark = pytest.mark.slow


def test_torchrun_two_processes_write_one_run_folder(tmp_path):
    results = tmp_path / "runs"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "farnetlib.engine.cli", "train", "--set", "dataset=synthetic", "synthetic_train=12",
           "synthetic_test=4", "val_count=4", "synthetic_landmarks=5", "synthetic_image_size=[96,80]",
           "input_size=[64,64]", "sigma=2.0", "epochs=2", "batch_size=2", "backbone=resnet18", "lr=0.001",
           "milestones=[1]", "threads=1", "device=cpu", f"results_dir={results}", "decoder_width=0.125",
           "precision=\"fp32\""]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    folders = [p for p in results.iterdir() if p.is_dir()]
    assert len(folders) == 1, folders  # no run_name: rank 0 names the folder, rank 1 uses it
    run = folders[0]
    assert (run / "metrics.json").is_file() and (run / "predictions.csv").is_file()
    history = pd.read_csv(run / "history.csv")
    assert history["epoch"].tolist() == [1, 2]
    # rank 0's progress lines (the only ones printed) match the history it wrote
    printed = re.findall(r"epoch (\d+)/2: loss ([0-9.e+-]+), val MRE ([0-9.e+-]+)", proc.stdout + proc.stderr)
    assert [int(e) for e, _, _ in printed] == [1, 2], proc.stdout[-2000:]
    for (_, loss, mre), (_, row) in zip(printed, history.iterrows()):
        assert float(loss) == pytest.approx(row["train_loss"], rel=1e-3)
        assert float(mre) == pytest.approx(row["val_mre"], rel=1e-3)
    # each process trained on its half of the 8 training images: 2 steps of batch 2 per epoch
    assert history["train_loss"].notna().all()
