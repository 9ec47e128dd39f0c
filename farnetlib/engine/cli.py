"""Command line: ``python -m farnetlib.engine.cli train --config configs/x.json --set epochs=3``.

``--set field=value`` overrides (JSON values: ``--set input_size=[256,224] --set augment=true``).
"""
from __future__ import annotations

import argparse
import json

from .config import TrainConfig
from .evaluate import evaluate
from .train import train


def _overrides(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="farnet", description="Train or evaluate FARNet.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train per a config (resumes a run folder that has a checkpoint)")
    t.add_argument("--config", help="JSON config file (fields of TrainConfig)")
    t.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE")
    t.add_argument("--run-dir", help="run folder (default: <results_dir>/<run_name or generated>)")
    t.add_argument("--no-resume", action="store_true")
    e = sub.add_parser("evaluate", help="evaluate a run's selected checkpoint on a split")
    e.add_argument("run", help="run folder or checkpoint file")
    e.add_argument("split")
    e.add_argument("--root", help="another copy of the dataset (e.g. the official ISBI layout with Test2)")
    e.add_argument("--decoder")
    e.add_argument("--ground-truth")
    e.add_argument("--write", action="store_true", help="add predictions and metrics to the run folder")
    e.add_argument("--label", help="name under which --write stores the split (default: the split)")
    args = ap.parse_args(argv)
    if args.cmd == "train":
        values = json.loads(open(args.config).read()) if args.config else {}
        values.update(_overrides(args.set))
        run_dir = train(TrainConfig.from_dict(values), run_dir=args.run_dir, resume=not args.no_resume)
        print(f"run folder: {run_dir}")
        print((run_dir / "metrics.json").read_text())
    else:
        over = {k: v for k, v in {"decoder": args.decoder, "ground_truth": args.ground_truth}.items() if v}
        _, metrics = evaluate(args.run, args.split, root=args.root, write=args.write, label=args.label, **over)
        print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
