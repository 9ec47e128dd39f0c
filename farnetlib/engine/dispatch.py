"""Dispatching the runs of a study or a cross-validation to other processes or a Slurm cluster.

Each arm of a study and each fold of ``farnet cv`` is an ordinary run folder that resumes exactly and
is skipped once finished; this module only decides *where* each one trains, through **submitit**
(``pip install 'farnetlib[cluster]'``), never a scheduler of our own:

- ``inline`` (the default): one after another in this process (:func:`farnetlib.engine.study.train_study`,
  :func:`farnetlib.engine.folds.train_folds`);
- ``local``: submitit's local executor, each unfinished unit a process of its own on this machine, at
  most ``max_parallel`` at a time, the CPU threads split between them; the call waits for them;
- ``slurm``: one Slurm **job array** of the unfinished units (``sbatch`` through submitit), submitted
  and left to run; ``--status`` follows them.

Preemption and time limits: Slurm signals a job (``USR2``, ``signal_delay_s`` before its time limit, or
where a site sends it on preemption); submitit then calls :meth:`TrainUnit.checkpoint`, which hands back
the same unit: the epoch under way is abandoned, the job is requeued, and the unit resumes from the
run's ``last.pt`` (a resumed run equals an uninterrupted one: tested). A unit is requeued at most
``max_requeues`` times; a failure that is not a signal (an exception) is not requeued at all, and its
error stays in the job's log (``--status`` prints its last line and the log's path).

The jobs are recorded in ``<results_dir>/jobs-<name>.json`` (unit -> executor, job id, logs, time of
submission), so that ``--status`` works from another shell and after a restart, and a second submission
skips the units whose jobs are still queued or running. submitit's own files (pickles, logs) go to
``<results_dir>/.submitit/<name>/`` (git-ignored).
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

from ..progress import log
from ..config import ConfigError, TrainConfig
from ..data.io import write_atomic

__all__ = ["EXECUTORS", "Launcher", "Unit", "TrainUnit", "train_in_turn", "dispatch", "unit_status", "status_lines",
           "slurm_executor", "jobs_record_path", "launcher_from_dict"]

EXECUTORS = ("inline", "local", "slurm")
ACTIVE = ("queued", "running")  # states in which a unit's job must not be submitted again


@dataclass(frozen=True)
class Launcher:
    """Where and how the units run (``farnet study`` / ``farnet cv`` options, or a study file's
    ``launcher`` block). Slurm time in minutes, memory in GB; ``slurm_extra``: any other sbatch option
    (``{"account": "x", "qos": "high"}``)."""

    executor: str = "inline"
    max_parallel: int = 2  # local: units at a time
    slurm_partition: str | None = None
    slurm_time: int = 180
    slurm_gpus: int = 0
    slurm_cpus: int = 8
    slurm_mem: int | None = None
    slurm_array_parallelism: int = 32
    slurm_extra: dict = field(default_factory=dict)
    max_requeues: int = 3  # preemptions / time limits before a unit is given up
    signal_delay_s: int = 120  # Slurm signals this long before the time limit (an epoch can be abandoned)

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ConfigError(f"executor {self.executor!r}: must be one of {list(EXECUTORS)}")
        for name in ("max_parallel", "slurm_time", "slurm_cpus", "slurm_array_parallelism"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"launcher {name} = {getattr(self, name)!r}: must be >= 1")
        for name in ("slurm_gpus", "max_requeues", "signal_delay_s"):
            if int(getattr(self, name)) < 0:
                raise ConfigError(f"launcher {name} = {getattr(self, name)!r}: must be >= 0")
        if not isinstance(self.slurm_extra, dict):
            raise ConfigError("launcher slurm_extra must be a JSON object of sbatch options")


def launcher_from_dict(values: dict, where: str = "launcher") -> Launcher:
    """A ``launcher`` block (a study file's) as a :class:`Launcher`; unknown keys are an error naming them."""
    known = set(Launcher.__dataclass_fields__)
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
    return Launcher(**values)


@dataclass(frozen=True)
class Unit:
    """One arm or fold: its name, config and run folder."""

    name: str
    cfg: TrainConfig
    run_dir: Path

    @property
    def finished(self) -> bool:
        return (self.run_dir / "metrics.json").is_file()


class TrainUnit:
    """The job of one unit: train (resume, or skip when finished) its run folder; checkpointable.

    Picklable (plain values only), so that submitit can send it to another process or node."""

    def __init__(self, config: dict, run_dir: str) -> None:
        self.config, self.run_dir = config, run_dir

    def __call__(self) -> dict:
        from .training import train

        if int(os.environ.get("SLURM_NTASKS", "1")) > 1:  # several GPUs: one task per GPU, as torchrun would
            import submitit.helpers

            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        run = train(TrainConfig.from_dict(self.config), run_dir=self.run_dir, progress=False)
        return {"run_dir": str(run), "finished": (run / "metrics.json").is_file()}

    def checkpoint(self, *args, **kwargs):
        """Called by submitit on preemption or before the time limit: the same unit, which resumes
        from the run's ``last.pt`` when the requeued job starts."""
        import submitit.helpers

        return submitit.helpers.DelayedSubmission(TrainUnit(self.config, self.run_dir))


def train_in_turn(units: Sequence[Unit], time_limit: float | None = None, progress: bool = True,
                  label: str = "", kind: str = "run", reuse_execution: bool = False) -> list[Path]:
    """The ``inline`` executor: train (or resume, or skip when finished) each unit in order in this
    process; returns their folders. ``time_limit`` (minutes) covers the whole call: each unit gets what
    the earlier ones left (its own ``time_limit``, if any, still bounds it). A unit that stops before it
    is finished (a time limit, SIGTERM/SIGINT) ends the call, so that a stop request stops the study or
    the cross-validation and not only its current run; the same command resumes it. ``kind`` names a
    unit in messages (arm, fold), ``label`` prefixes them; ``reuse_execution``: the later units take the
    execution options the first one measured (one choice, as for the folds of one dataset)."""
    from .stopping import Deadline, previous_history
    from .training import train

    runs: list[Path] = []
    deadline = Deadline(time_limit)
    for unit in units:
        if deadline.expired() and not unit.finished:
            if progress:
                log.info(f"{label}time limit ({time_limit:g} min) used up before {kind} {unit.name}; the same command "
                         "resumes there")
            break
        if progress and label:
            log.info(f"{label}{kind} {unit.name} -> {unit.run_dir}")
        cfg = unit.cfg
        if time_limit is not None:
            left = deadline.minutes_left()
            cfg = replace(cfg, time_limit=left if cfg.time_limit is None else min(left, cfg.time_limit))
        runs.append(train(cfg, run_dir=unit.run_dir, progress=progress, prior_history=previous_history(runs),
                          execution_from=runs[-1] if reuse_execution and runs else None))
        if not (runs[-1] / "metrics.json").is_file():
            if progress:
                log.info(f"{label}{kind} {unit.name} stopped before it finished; the same command resumes it")
            break
    return runs


def _submitit():
    try:
        import submitit
    except ImportError:
        raise ConfigError("the local and slurm executors need submitit: pip install 'farnetlib[cluster]' "
                          "(or pip install submitit)") from None
    return submitit


def jobs_record_path(results_dir: str | Path, name: str) -> Path:
    return Path(results_dir) / f"jobs-{name}.json"


def _read_record(path: Path) -> dict:
    if not path.is_file():
        return {"units": {}}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not a jobs record ({err})") from None


def slurm_executor(folder: str | Path, launcher: Launcher, name: str, python: str | None = None):
    """submitit's Slurm executor with ``launcher``'s options (one task per GPU where there are several)."""
    submitit = _submitit()
    ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=launcher.max_requeues, python=python)
    gpus = launcher.slurm_gpus
    params = dict(job_name=f"farnet-{name}", time=launcher.slurm_time, cpus_per_task=launcher.slurm_cpus,
                  ntasks_per_node=max(1, gpus), array_parallelism=launcher.slurm_array_parallelism,
                  signal_delay_s=launcher.signal_delay_s, additional_parameters=dict(launcher.slurm_extra))
    if launcher.slurm_partition:
        params["partition"] = launcher.slurm_partition
    if gpus:
        params["gpus_per_node"] = gpus
    if launcher.slurm_mem:
        params["mem"] = f"{launcher.slurm_mem}GB"
    ex.update_parameters(**params)
    return ex


def _local_executor(folder: Path, launcher: Launcher):
    submitit = _submitit()
    ex = submitit.LocalExecutor(folder=folder, max_num_timeout=launcher.max_requeues)
    ex.update_parameters(timeout_min=60 * 24 * 30, signal_delay_s=launcher.signal_delay_s)  # no wall limit of ours
    return ex


def _job_entry(job, executor: str) -> dict:
    return {"executor": executor, "job_id": str(job.job_id), "stdout": str(job.paths.stdout),
            "stderr": str(job.paths.stderr), "folder": str(job.paths.folder),
            "submitted": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def dispatch(units: Sequence[Unit], launcher: Launcher, results_dir: str | Path, name: str,
             progress: bool = True, poll_s: float = 2.0,
             on_done: Callable[[Unit, dict], None] | None = None) -> dict[str, dict]:
    """Run the unfinished ``units`` with ``launcher`` (``local`` or ``slurm``; ``inline`` is the
    callers' own loop). Finished units and units whose recorded job is still queued or running are
    not submitted. ``local`` waits for every unit; ``slurm`` returns once the array is submitted.
    Returns the jobs record's entries of this call's submissions (unit name -> entry)."""
    if launcher.executor not in ("local", "slurm"):
        raise ConfigError(f"dispatch runs the local and slurm executors, not {launcher.executor!r}")
    record_path = jobs_record_path(results_dir, name)
    record = _read_record(record_path)
    todo = []
    for unit in units:
        if unit.finished:
            continue
        state = unit_status(unit, record["units"].get(unit.name))["state"]
        if state in ACTIVE:
            if progress:
                log.info(f"{name}: {unit.name} is {state} (job {record['units'][unit.name]['job_id']}): not submitted again")
            continue
        todo.append(unit)
    folder = Path(results_dir) / ".submitit" / name
    submitted: dict[str, dict] = {}
    if not todo:
        return submitted
    if launcher.executor == "slurm":
        ex = slurm_executor(folder, launcher, name)
        with ex.batch():
            jobs = [ex.submit(TrainUnit(u.cfg.to_dict(), str(u.run_dir))) for u in todo]
        for unit, job in zip(todo, jobs):
            submitted[unit.name] = _job_entry(job, "slurm")
        _write_record(record_path, record, submitted)
        if progress:
            what = f"array {jobs[0].job_id.split('_')[0]}" if len(jobs) > 1 else f"job {jobs[0].job_id}"
            log.info(f"{name}: submitted {len(jobs)} unit(s) as Slurm {what}; follow them with --status "
                     f"(record: {record_path})")
        return submitted
    return _run_local(todo, launcher, folder, record_path, record, name, progress, poll_s, on_done)


def _run_local(todo: list[Unit], launcher: Launcher, folder: Path, record_path: Path, record: dict, name: str,
               progress: bool, poll_s: float, on_done) -> dict[str, dict]:
    """At most ``max_parallel`` units at a time as local submitit processes; waits for all."""
    ex = _local_executor(folder, launcher)
    threads = max(1, (os.cpu_count() or 1) // min(launcher.max_parallel, len(todo)))
    waiting, running, submitted = list(todo), {}, {}
    while waiting or running:
        while waiting and len(running) < launcher.max_parallel:
            unit = waiting.pop(0)
            cfg = replace(unit.cfg, threads=threads) if unit.cfg.threads is None or unit.cfg.threads > threads else unit.cfg
            job = ex.submit(TrainUnit(cfg.to_dict(), str(unit.run_dir)))
            running[unit.name] = (unit, job)
            submitted[unit.name] = _job_entry(job, "local")
            _write_record(record_path, record, {unit.name: submitted[unit.name]})
            if progress:
                log.info(f"{name}: {unit.name} started (process {job.job_id}, {threads} threads; log {job.paths.stdout})")
        time.sleep(poll_s)
        for key, (unit, job) in list(running.items()):
            if job.done():
                del running[key]
                status = unit_status(unit, submitted[key])
                if progress:
                    log.info(f"{name}: {unit.name} {status['state']}{': ' + status['detail'] if status['detail'] else ''}")
                if on_done is not None:
                    on_done(unit, status)
    return submitted


def _write_record(path: Path, record: dict, entries: dict) -> None:
    record.setdefault("units", {}).update(entries)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(record, indent=2))


def _history_epochs(run_dir: Path) -> int:
    path = run_dir / "history.csv"
    if not path.is_file():
        return 0
    return max(0, sum(1 for line in path.read_text().splitlines() if line.strip()) - 1)


def _last_line(path: str | None) -> str:
    if not path or not Path(path).is_file():
        return ""
    lines = [ln.strip() for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def _job_state(entry: dict) -> str:
    """submitit's state of a recorded job: slurm through sacct; local from its result file and process."""
    submitit = _submitit()
    folder = Path(entry["folder"])
    if entry["executor"] == "slurm":
        state = str(submitit.SlurmJob(folder=folder, job_id=entry["job_id"]).state) if _sacct_works() else "UNKNOWN"
        if state in ("UNKNOWN", ""):  # no accounting (sacct disabled): the queue knows the jobs still in it
            state = _squeue_state(entry["job_id"]) or ("COMPLETED" if submitit.SlurmJob(
                folder=folder, job_id=entry["job_id"]).paths.result_pickle.exists() else "UNKNOWN")
        return state
    if submitit.local.local.LocalJob(folder=folder, job_id=entry["job_id"]).paths.result_pickle.exists():
        return "FINISHED"
    try:
        os.kill(int(entry["job_id"]), 0)  # the job's controller process (it restarts a requeued job itself)
    except (OSError, ValueError):
        return "INTERRUPTED"
    return "RUNNING"


def _sacct_works() -> bool:
    """Whether this cluster keeps accounting (submitit reads job states with sacct; small clusters
    often run without it, and then only squeue knows the jobs still queued or running). Asked the way
    submitit asks (``subprocess.check_output``), so that what fakes one fakes both."""
    try:
        subprocess.check_output(["sacct", "-n", "-j", "1"], stderr=subprocess.DEVNULL, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    return True


def _squeue_state(job_id: str) -> str:
    """The state ``squeue`` gives a job still in the queue ('' when it has left it, or without squeue)."""
    try:
        out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    states = out.stdout.split() if out.returncode == 0 else []
    return states[0] if states else ""


SLURM_QUEUED = ("PENDING", "REQUEUED", "CONFIGURING", "SUSPENDED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD")
SLURM_RUNNING = ("RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING")


def unit_status(unit: Unit, entry: dict | None) -> dict:
    """``{"state", "detail"}`` of one unit: finished (with its validation and test MRE), running
    (epoch k of N), queued, failed (the last line of its error and its log), stopped (resumable) or
    not started."""
    epochs = _history_epochs(unit.run_dir)
    if unit.finished:
        metrics = json.loads((unit.run_dir / "metrics.json").read_text())
        mres = ", ".join(f"{split} {m['mre']:.3f} {m.get('unit', '')}".rstrip()
                         for split, m in metrics.get("splits", {}).items() if isinstance(m, dict) and "mre" in m)
        return {"state": "finished", "detail": mres}
    if entry is not None:
        state = _job_state(entry)
        if state in SLURM_QUEUED:
            return {"state": "queued", "detail": f"job {entry['job_id']}"}
        if state in SLURM_RUNNING or state.startswith("RUNNING"):
            return {"state": "running", "detail": f"epoch {epochs} of {unit.cfg.epochs}, job {entry['job_id']}"}
        if state not in ("COMPLETED", "FINISHED", "UNKNOWN"):  # FAILED, TIMEOUT, CANCELLED, OUT_OF_MEMORY, ...
            return {"state": "failed", "detail": f"{state}: {_last_line(entry.get('stderr')) or 'no error line'} "
                                                 f"(log {entry.get('stderr')})"}
        error = _result_error(entry)
        if error:
            return {"state": "failed", "detail": f"{error} (log {entry.get('stderr')})"}
    if epochs:
        return {"state": "stopped", "detail": f"epoch {epochs} of {unit.cfg.epochs}: submit again to resume"}
    return {"state": "not started", "detail": ""}


def _result_error(entry: dict) -> str:
    """The last line of the error a finished submitit job recorded, or ''."""
    submitit = _submitit()
    job_cls = submitit.SlurmJob if entry["executor"] == "slurm" else submitit.local.local.LocalJob
    job = job_cls(folder=Path(entry["folder"]), job_id=entry["job_id"])
    if not job.paths.result_pickle.exists():
        return ""
    try:
        outcome, value = submitit.core.utils.pickle_load(job.paths.result_pickle)
    except Exception:  # noqa: BLE001 - an unreadable result is said, not raised
        return "unreadable job result"
    if outcome == "success":
        return ""
    lines = [ln for ln in str(value).splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "error"


def status_lines(units: Sequence[Unit], results_dir: str | Path, name: str) -> list[str]:
    """One line per unit: its name, state and detail (``farnet study --status``, ``farnet cv --status``)."""
    record = _read_record(jobs_record_path(results_dir, name))
    out = []
    for unit in units:
        s = unit_status(unit, record["units"].get(unit.name))
        out.append(f"{unit.name:28s} {s['state']:12s} {s['detail']}".rstrip())
    return out
