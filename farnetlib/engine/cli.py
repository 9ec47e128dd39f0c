"""Command line, installed as ``farnet`` (also ``python -m farnetlib.engine.cli``)::

    farnet train --config configs/isbi2015_cpu.json --set epochs=3
    farnet train --config configs/isbi2015_overnight.json --time-limit 170   # stops resumably; same command resumes
    farnet cv --config configs/hand_xray_cpu.json          # one run per fold, then the pooled table
    farnet study --config configs/isbi2015_ablation.json   # each arm of an ablation (resumable)
    farnet evaluate results/isbi2015_cpu/isbi2015_cpu test1 --ground-truth senior --write
    farnet predict results/isbi2015_cpu/isbi2015_cpu path/to/images --out predictions/

``--set field=value`` overrides (JSON values: ``--set input_size=[256,224] --set augment=true``, or
several pairs after one ``--set``; ``--set dataset_options.fold=2`` changes one dataset option).
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from pathlib import Path

# Only the standard library at import: `farnet --help` answers without loading torch; each command
# imports what it runs.


def _overrides(pairs: list[str]) -> dict:
    from ..config import ConfigError

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {pair}: expected FIELD=VALUE (e.g. --set epochs=3)")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("farnetlib")
    except PackageNotFoundError:
        return "unknown (not installed)"


def config_values(config: str | None, sets: list[str]) -> dict:
    """The config file's fields (none without a file) with the ``--set`` pairs ``FIELD=VALUE`` applied."""
    from ..config import apply_overrides, read_json_config

    return apply_overrides(read_json_config(config) if config else {}, _overrides(sets))


def _config(args: argparse.Namespace, extra: dict | None = None):
    """The config of ``--config``, ``--set`` and ``extra`` (options such as ``--time-limit``); an
    error names the file (or says it came from --set)."""
    from ..config import ConfigError, TrainConfig

    try:
        return TrainConfig.from_dict({**config_values(args.config, args.set), **(extra or {})})
    except ConfigError as err:
        where = args.config or "the --set values"
        raise ConfigError(str(err) if str(err).startswith(str(where)) else f"{where}: {err}") from None


def user_errors() -> tuple[type[BaseException], ...]:
    """What a user's input causes (a bad config, a missing file, a locked or damaged run, a missing
    extra): said in one line, without a traceback."""
    from ..config import ConfigError
    from ..data.io import DatasetError, RunRecordError
    from ..inference import MissingExtra
    from .runs import RunLocked

    return ConfigError, DatasetError, FileNotFoundError, FileExistsError, RunLocked, RunRecordError, MissingExtra


# what the machine refuses (a full disk, a read-only or foreign folder): said in one line, with the path
MACHINE_ERRNOS = (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT)
EXIT_STOPPED = 3  # training stopped before its last epoch (time limit, SIGTERM): the same command resumes


def _launcher_args(parser) -> None:
    """The executor options of ``farnet study`` and ``farnet cv`` (farnetlib.engine.dispatch)."""
    g = parser.add_argument_group("executor (where the runs train; submitit, pip install 'farnetlib[cluster]')")
    g.add_argument("--executor", choices=("inline", "local", "slurm"), help="inline (default: one after another here), local (parallel "
                                                          "processes here), slurm (a job array)")
    g.add_argument("--status", action="store_true", help="one line per run: finished, running, queued, failed; train nothing")
    g.add_argument("--max-parallel", type=int, help="local: runs at a time (threads split between them)")
    g.add_argument("--slurm-partition")
    g.add_argument("--slurm-time", type=int, metavar="MINUTES", help="each job's time limit (requeued before it)")
    g.add_argument("--slurm-gpus", type=int, help="GPUs per job (> 1: one task per GPU, torch distributed)")
    g.add_argument("--slurm-cpus", type=int, help="CPUs per task")
    g.add_argument("--slurm-mem", type=int, metavar="GB")
    g.add_argument("--slurm-array-parallelism", type=int, help="jobs of the array running at once")
    g.add_argument("--slurm-extra", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="any other sbatch option, e.g. account=lab qos=high")


def _launcher(args, base):
    """The study file's launcher block (or the defaults) with the command line's options over it."""
    from ..config import ConfigError
    from .dispatch import Launcher

    values = dict(vars(base)) if base is not None else {}
    for name in ("executor", "max_parallel", "slurm_partition", "slurm_time", "slurm_gpus", "slurm_cpus", "slurm_mem",
                 "slurm_array_parallelism"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    for item in args.slurm_extra:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--slurm-extra {item!r}: expected KEY=VALUE (an sbatch option)")
        values["slurm_extra"] = {**values.get("slurm_extra", {}), key: value}
    return Launcher(**values)


def _dispatched(args, units, launcher, results_dir: str, name: str) -> bool:
    """--status, or the local / slurm executors; False where the inline loop is to run."""
    from .dispatch import dispatch, status_lines

    if args.status:
        print("\n".join(status_lines(units, results_dir, name)))
        return True
    if launcher.executor == "inline":
        return False
    dispatch(units, launcher, results_dir, name)
    if launcher.executor == "local":
        print("\n".join(status_lines(units, results_dir, name)))
        if not all(u.finished for u in units):
            raise SystemExit(EXIT_STOPPED)
    return True


def main(argv: list[str] | None = None) -> None:
    """``farnet``: a user error (bad config, missing file, ...) or one the machine gives (a full
    disk, a read-only folder) is one line ``farnet: error: ...`` and exit status 2, as argparse's
    own; ``--debug`` shows the traceback instead. Exit status 3: training stopped, resumable."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if debug:
        argv.remove("--debug")
    args = build_parser().parse_args(argv or ["--help"])  # --help and usage errors end here, before torch loads
    errors = user_errors()
    try:
        COMMANDS[args.cmd](args)
    except errors as err:
        if debug:
            raise
        print(f"farnet: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as err:
        if debug or err.errno not in MACHINE_ERRNOS:
            raise
        where = f": {err.filename}" if err.filename and str(err.filename) not in str(err.strerror) else ""
        print(f"farnet: error: {err.strerror or err}{where}", file=sys.stderr)
        raise SystemExit(2) from None


def _summary(run_dir) -> str:
    """A few lines per finished run: each split's MRE, SD and first SDR radius (and the spine's SMAPE,
    the cephalograms' mean SCR beside the junior doctor's); the whole record stays in metrics.json."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    lines = []
    for split, m in metrics.get("splits", {}).items():
        unit, radii = m.get("unit", ""), m.get("radii") or []
        sdr = f", SDR {radii[0]:g} {unit} {m[f'sdr_{radii[0]:g}']:.1f} %" if radii and f"sdr_{radii[0]:g}" in m else ""
        extra = f", SMAPE {m['smape_%']:.1f} %" if "smape_%" in m else ""
        clinical = m.get("clinical", {})
        if "mean_scr_%" in clinical:
            human = clinical.get("junior_vs_senior", {}).get("mean_scr_%")
            extra += f", mean SCR {clinical['mean_scr_%']:.1f} %" + (f" (junior doctor {human:.1f} %)" if human else "")
        lines.append(f"  {split}: {m['n_images']} images, MRE {m['mre']:.3f} ± {m['sd']:.3f} {unit}{sdr}{extra}")
    skipped = metrics.get("skipped", {})
    lines += [f"  {split}: skipped ({why})" for split, why in skipped.items()]
    return "\n".join(lines + [f"everything: {run_dir / 'metrics.json'}"])


def _stopped_exit(run_dirs: list) -> None:
    """After training: exit 3 with one line where a run stopped before its end (resumable), and say
    so plainly where the time limit left room for no epoch at all."""
    import pandas as pd

    unfinished = [d for d in run_dirs if not (d / "metrics.json").is_file()]
    if not unfinished:
        return
    stretches = unfinished[0] / "stretches.csv"
    last = pd.read_csv(stretches).iloc[-1] if stretches.is_file() else None
    if last is not None and int(last["epochs"]) == 0 and "time limit" in str(last["stopped"]):
        print(f"farnet: no epoch fits in the time limit ({last['stopped']}): nothing was trained; give more minutes",
              file=sys.stderr)
    else:
        print(f"farnet: stopped before the end ({len(unfinished)} run(s) unfinished): the same command resumes",
              file=sys.stderr)
    raise SystemExit(EXIT_STOPPED)


def build_parser() -> argparse.ArgumentParser:
    """The ``farnet`` command line (its subcommands are :data:`COMMANDS`)."""
    ap = argparse.ArgumentParser(prog="farnet", description="Train or evaluate FARNet.",
                                 epilog="--debug (anywhere): show the traceback of an error")
    ap.add_argument("--version", action="version", version=f"farnet {_version()}")
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train per a config (resumes a run folder that has a checkpoint)")
    t.add_argument("--config", help="JSON config file (fields of TrainConfig)")
    t.add_argument("--set", nargs="+", action="extend", default=[], metavar="FIELD=VALUE",
                   help="override config fields (repeatable; JSON values)")
    t.add_argument("--time-limit", type=float, metavar="MINUTES",
                   help="stop resumably before an epoch that would not finish within MINUTES (config time_limit)")
    t.add_argument("--run-dir", help="run folder (default: <results_dir>/<run_name or generated>)")
    t.add_argument("--no-resume", action="store_true", help="start from scratch (refused on a finished run)")
    c = sub.add_parser("cv", help="train one run per fold (resumable), then print the pooled test table")
    c.add_argument("--config", required=True, help="JSON config file (dataset hand_xray, or csv with a fold column)")
    c.add_argument("--set", nargs="+", action="extend", default=[], metavar="FIELD=VALUE",
                   help="override config fields (repeatable; JSON values)")
    c.add_argument("--folds", nargs="+", type=int,
                   help="which folds to train (default: all; the hand set: Payer's 1 2 3)")
    c.add_argument("--time-limit", type=float, metavar="MINUTES",
                   help="for all folds together: stop resumably before an epoch that would not fit")
    _launcher_args(c)
    s = sub.add_parser("study", help="train each arm of a study file (resumable; finished arms are skipped)")
    s.add_argument("--config", required=True, help="study JSON file (base config + arms)")
    s.add_argument("--arms", nargs="+", help="arm names (default: all, in the file's order)")
    s.add_argument("--list", action="store_true", help="list the arms and which are finished, train nothing")
    s.add_argument("--time-limit", type=float, metavar="MINUTES",
                   help="for all arms together: stop resumably before an epoch that would not fit")
    _launcher_args(s)
    m = sub.add_parser("compare", help="a run beside a reference run: MRE, SDR and the paired difference per split")
    m.add_argument("run", help="a finished run folder")
    m.add_argument("reference", nargs="?", help="default: the committed run the run's config names (results/...)")
    e = sub.add_parser("evaluate", help="evaluate a run's selected checkpoint on a split")
    e.add_argument("run", help="run folder or checkpoint file")
    e.add_argument("split", help="a split of the run's dataset: isbi2015 train/test1/test2, hand_xray train/test, "
                                 "aasce training/test, synthetic train/test")
    e.add_argument("--root", help="another copy of the dataset (e.g. the official ISBI layout with Test2)")
    e.add_argument("--decoder", type=_decoder, help=DECODER_HELP)
    e.add_argument("--ground-truth", choices=("mean", "senior", "junior"), help="ISBI only; default: the run's")
    e.add_argument("--eval-batch-size", type=int, help="images per forward pass (memory only, not results)")
    e.add_argument("--write", action="store_true", help="add predictions and metrics to the run folder")
    e.add_argument("--label", help="name under which --write stores the result (default: the split, plus the "
                                   "ground truth and decoder where they differ from the run's, e.g. test1_senior)")
    e.add_argument("--force", action="store_true", help="with --write: replace an existing entry of that label")
    e.add_argument("--backend", default="auto", choices=("auto", "torch", "onnxruntime", "openvino"),
                   help="what computes the heatmaps (decoding is the same fp32 code); auto: OpenVINO f32 where "
                        "installed (within 0.01 px of eager PyTorch; speeds: results/benchmarks/inference_backends_*), else ONNX Runtime, "
                        "else torch; recorded in the result")
    e.add_argument("--backend-precision", default="fp32", choices=("fp32", "bf16"),
                   help="openvino only: fp32 (pinned, the default) or bf16 (faster on CPUs with bf16; measured cost)")
    p = sub.add_parser("predict", help="predict landmarks on a folder of images: a CSV and overlays")
    p.add_argument("run", help="run folder or checkpoint file")
    p.add_argument("images", help="a folder of images, or one image")
    p.add_argument("--out", required=True, help="output folder (predictions.csv, overlays/)")
    p.add_argument("--decoder", type=_decoder, help=DECODER_HELP)
    p.add_argument("--no-overlays", action="store_true", help="write the CSV only")
    p.add_argument("--coverage", type=float, default=0.9,
                   help="level of each landmark's error radius (split conformal, from the run's validation errors; "
                        "0: none)")
    p.add_argument("--device", default="auto", help="torch backend: auto | cpu | cuda[:N]")
    p.add_argument("--force", action="store_true", help="replace an existing predictions.csv in --out")
    p.add_argument("--backend", default="auto", choices=("auto", "torch", "onnxruntime", "openvino"),
                   help="what computes the heatmaps (farnetlib.inference.Predictor); auto: OpenVINO f32 where installed")
    p.add_argument("--backend-precision", default="fp32", choices=("fp32", "bf16"), help="openvino only")
    x = sub.add_parser("export", help="export a run's selected model (ONNX or OpenVINO) with its preprocessing")
    x.add_argument("run", help="run folder (with checkpoints/best.pt) or checkpoint file")
    x.add_argument("--format", default="onnx", choices=("onnx", "openvino"), help="model.onnx or model.xml/.bin")
    x.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), help="default: the run's input size")
    x.add_argument("--out", help="output folder (default: <run>/export)")
    v = sub.add_parser("convert", help="into the generic format (landmarks.csv + dataset.json): COCO keypoints, "
                                       "or a built-in dataset")
    v.add_argument("source", help="coco, or a registered dataset with a converter (isbi2015, hand_xray, aasce)")
    v.add_argument("paths", nargs="+", metavar="PATH",
                   help="coco: ANNOTATIONS.json IMAGES_DIR OUT_ROOT; a built-in dataset: ROOT OUT_ROOT")
    v.add_argument("--occluded", default="keep", choices=("keep", "missing"),
                   help="coco: keypoints with visibility 1 (labelled, not visible); visibility 0 is always missing")
    v.add_argument("--ground-truth", choices=("mean", "senior", "junior"), help="isbi2015 only (default: mean)")
    return ap


DECODER_HELP = ("default: the run's; a name (argmax, quadratic, dark, spine_ordered, spine_peaks, spine_corners) or "
                "JSON with parameters, e.g. '{\"name\": \"dark\", \"blur_kernel\": 7}'")


def _decoder(text: str):
    """``--decoder``: a name, or a JSON object ``{"name": ..., parameters}`` (checked when it is built)."""
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise argparse.ArgumentTypeError(f"not valid JSON ({err})") from None
    return text


def _time_limit(args) -> dict | None:
    return {"time_limit": args.time_limit} if args.time_limit is not None else None


def _train(args) -> None:
    from .training import train

    if not args.config and not args.set:
        build_parser().error("train needs --config FILE (or --set FIELD=VALUE ...): without either it would start the "
                             "paper's default (800 x 640, 300 epochs, batch 1: days on a CPU); e.g. farnet train "
                             "--config configs/isbi2015_cpu.json")
    cfg = _config(args, _time_limit(args))
    try:
        run_dir = train(cfg, run_dir=args.run_dir, resume=not args.no_resume)
    except KeyboardInterrupt:
        raise SystemExit(130)  # train() said which epoch was abandoned and how to resume
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one report
        print(f"run folder: {run_dir}")
        if (run_dir / "metrics.json").is_file():
            print(_summary(run_dir))
        _stopped_exit([run_dir])


def _cv(args) -> None:
    from ..crossval import pooled_summary, pooled_table
    from ..data.registry import get_dataset
    from ..reporting import with_units
    from .folds import fold_units, train_folds
    from .runs import load_run

    cfg = _config(args, _time_limit(args))
    wanted = args.folds or get_dataset(cfg.dataset).folds(cfg)
    units = fold_units(cfg, wanted)
    launcher = _launcher(args, None)
    if _dispatched(args, units, launcher, cfg.results_dir, cfg.run_name or cfg.dataset):
        if args.status or launcher.executor != "local":
            return
        run_dirs = [u.run_dir for u in units]  # the local executor waited for every fold
    else:
        run_dirs = train_folds(cfg, folds=wanted)
    if not all((d / "metrics.json").is_file() for d in run_dirs) or len(run_dirs) < len(wanted):
        print("not every fold is finished yet: run the same command to resume")
        raise SystemExit(EXIT_STOPPED)
    print("\n".join(f"run folder: {d}" for d in run_dirs))
    table = pooled_table if get_dataset(cfg.dataset).pooled_by_pairs else pooled_summary  # hand: both 50 mm pairs
    runs = [load_run(d) for d in run_dirs]
    unit = next(iter(runs[0]["metrics"]["splits"].values()))["unit"]
    print(with_units(table(runs), unit).round(2).to_string())


def _study(args) -> None:
    from ..config import ConfigError
    from .study import load_study, train_study

    if args.time_limit is not None and not 0 < args.time_limit < float("inf"):
        raise ConfigError(f"--time-limit {args.time_limit:g}: must be a positive number of minutes")
    study = load_study(args.config)
    if not args.list and _dispatched(args, study.units(args.arms), _launcher(args, study.launcher),
                                     study.base.results_dir, study.name):
        return
    if not args.list:
        train_study(study, args.arms, time_limit=args.time_limit)
    finished = set(study.finished())
    for arm in study.select(args.arms):
        print(f"{arm:28s} {'finished' if arm in finished else 'not finished'}  {study.run_dir(arm)}")
    if not args.list and any(arm not in finished for arm in study.select(args.arms)):
        raise SystemExit(EXIT_STOPPED)


def _compare(args) -> None:
    from ..config import ConfigError
    from ..reporting import compare_runs, seed_spread
    from .runs import load_run, reference_folder

    run = load_run(Path(args.run))
    reference = args.reference or str(reference_folder(run["config"]["results_dir"]) / run["name"])
    if Path(reference).resolve() == Path(args.run).resolve():
        raise ConfigError(f"{args.run} is its own reference: name the run to compare it with")
    ref = load_run(Path(reference))
    print(f"{run['name']} ({args.run}) against {reference}:")
    print(compare_runs(run, ref).round(3).to_string())
    print("difference: the run's MRE minus the reference's, with its paired bootstrap 95 % interval over images "
          "(whether these two models differ on these images)")
    spread = seed_spread(ref)
    if spread is None:
        print("seed spread of the reference's recipe: not measured (one seed among the committed runs); two seeds "
              "of one recipe differ too, so a small difference need not be a difference of recipes")
    else:
        print("seed spread of the reference's recipe in the committed runs (a difference of recipes must exceed it):")
        print(spread.round(3).to_string())


def _convert(args) -> None:
    from ..config import ConfigError
    from ..data.convert import from_coco
    from ..data.registry import to_generic

    want = 3 if args.source == "coco" else 2
    if len(args.paths) != want:
        raise ConfigError(f"convert {args.source} takes {want} paths: "
                          + ("ANNOTATIONS.json IMAGES_DIR OUT_ROOT" if want == 3 else "ROOT OUT_ROOT"))
    if args.source == "coco":
        out = from_coco(*args.paths, occluded=args.occluded)
    else:
        options = {"ground_truth": args.ground_truth} if args.ground_truth else {}
        out = to_generic(args.source, *args.paths, **options)
    print(f"wrote {out} and {out.parent / 'dataset.json'}; check it with: python -m farnetlib.data verify csv "
          f"{out.parent}")


def _export(args) -> None:
    from ..inference import export_run

    path = export_run(args.run, args.format, out_dir=args.out, input_size=args.input_size)
    print(f"exported {path} (+ preprocess.json)")


def _predict(args) -> None:
    from ..folder_prediction import predict_folder

    table = predict_folder(args.run, args.images, args.out, decoder=args.decoder,
                           overlays=not args.no_overlays, device=args.device, force=args.force,
                           backend=args.backend, backend_precision=args.backend_precision,
                           coverage=args.coverage or None)
    print(f"{table['image'].nunique()} images -> {args.out}/predictions.csv")
    for file, why in table.attrs["skipped"]:
        print(f"skipped {file}: {why}", file=sys.stderr)
    if table.attrs["skipped"]:
        raise SystemExit(f"farnet: {len(table.attrs['skipped'])} unreadable image(s) skipped (listed above)")


def _evaluate(args) -> None:
    from .evaluation import evaluate

    over = {k: v for k, v in {"decoder": args.decoder, "ground_truth": args.ground_truth,
                              "eval_batch_size": args.eval_batch_size}.items() if v is not None}
    _, metrics = evaluate(args.run, args.split, root=args.root, write=args.write, label=args.label,
                          force=args.force, backend=args.backend, backend_precision=args.backend_precision, **over)
    print(json.dumps(metrics, indent=2))


# subcommand -> what it does (its options: build_parser)
COMMANDS = {"train": _train, "cv": _cv, "study": _study, "compare": _compare, "evaluate": _evaluate,
            "predict": _predict, "export": _export, "convert": _convert}


if __name__ == "__main__":
    main()
