"""Run every benchmark (on demand; never part of the tests). Results: results/benchmarks/*.json.

    python benchmarks/run_all.py --data ../shared/data
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default="../shared/data")
    args = ap.parse_args()
    py = sys.executable
    steps = [
        [py, HERE / "model_cost.py"],
        [py, HERE / "loader.py", "--root", f"{args.data}/isbi2015"],
        [py, HERE / "loader.py", "--root", f"{args.data}/isbi2015", "--size", "256", "224"],
        [py, HERE / "train_step.py", "--size", "800", "640", "--batches", "1", "2", "4"],
        [py, HERE / "train_step.py", "--size", "256", "224", "--batches", "1", "4", "8", "16"],
        [py, HERE / "inference.py"],
    ]
    for cmd in steps:
        print("$", " ".join(map(str, cmd)), flush=True)
        subprocess.run(list(map(str, cmd)), check=True)


if __name__ == "__main__":
    main()
