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
           "-m", "farnetlib.engine.cli", "train", "--set", "dataset=synthetic",
           'dataset_options={"train": 12, "test": 4, "landmarks": 5, "image_size": [96, 80]}', "val_count=4",
           "input_size=[64,64]", "sigma=2.0", "epochs=2", "batch_size=2", "backbone=resnet18", "lr=0.001",
           "milestones=[1]", "threads=1", "device=cpu", f"results_dir={results}", "head_scale=0.125",
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


def _one_ddp_step(rank: int, world: int, port: int, out: str) -> None:
    """Rank ``rank`` of a 2-process gloo group: one engine step on its half of a fixed batch of 4."""
    import os

    import torch
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    model, optimizer, ctx, batch = _step_parts()
    net = torch.nn.parallel.DistributedDataParallel(model)
    half = {k: v[2 * rank:2 * rank + 2] for k, v in batch.items()}
    from farnetlib.engine.steps import train_step

    train_step(net, optimizer, None, half, ctx)
    if rank == 0:
        torch.save({k: v.detach() for k, v in model.named_parameters()}, out)
    dist.destroy_process_group()


def _step_parts():
    """A tiny FARNet, its optimiser, a step context and a batch of 4, the same in every process."""
    import torch

    from farnetlib.engine.steps import StepContext
    from farnetlib.heatmaps import farnet_codecs
    from farnetlib.losses import CoarseToFineLoss, EWCLoss
    from farnetlib.model import FARNet

    torch.manual_seed(0)
    model = FARNet(3, "resnet18", head_scale=0.125).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    coarse, fine = farnet_codecs((64, 64), sigma=2.0, sigma_coarse=2.0)
    ctx = StepContext(torch.device("cpu"), "fp32", False, (64, 64), fine, coarse, CoarseToFineLoss(EWCLoss(40.0)))
    gen = torch.Generator().manual_seed(1)
    batch = {"image": torch.randn(4, 3, 64, 64, generator=gen), "landmarks": torch.rand(4, 3, 2, generator=gen) * 63}
    return model, optimizer, ctx, batch


def test_two_ranks_at_batch_2_update_the_parameters_as_one_process_averaging_the_same_two_halves(tmp_path):
    """DDP averages the two ranks' gradients. With BatchNorm in training mode each rank normalises
    over its own 2 images (SyncBatchNorm needs CUDA), so the single-process equivalent is one update
    from the mean gradient of the same two halves, not one batch of 4 (whose BatchNorm statistics
    would span all 4 images)."""
    import socket

    import torch
    import torch.multiprocessing as mp

    from farnetlib.engine.steps import make_targets

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "ddp.pt"
    mp.spawn(_one_ddp_step, args=(2, port, str(out)), nprocs=2, join=True)
    ddp = torch.load(out)

    model, optimizer, ctx, batch = _step_parts()
    optimizer.zero_grad()
    for rank in (0, 1):
        half = {k: v[2 * rank:2 * rank + 2] for k, v in batch.items()}
        coarse_t, fine_t = make_targets(half["landmarks"], ctx)
        out_ = model(half["image"])
        (ctx.criterion(out_, coarse_t, fine_t)["loss"] / 2).backward()
    optimizer.step()
    single = dict(model.named_parameters())
    moved = [k for k in ddp if not torch.equal(ddp[k], _step_parts()[0].state_dict()[k])]
    assert len(moved) > 0.9 * len(ddp)  # the step changed (nearly) every parameter ...
    worst = max((ddp[k] - single[k].detach()).abs().max().item() for k in ddp)
    assert worst < 1e-5  # ... exactly as the single process did
