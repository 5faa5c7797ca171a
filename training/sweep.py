"""One row per job of a sweep: the table that ``scripts/summarize.py`` and every ``-m`` run print.

Each row shows the overrides that differ between the jobs and the final epoch's metrics (the last line of
each job's ``metrics.jsonl``); an Optuna sweep's best parameters (``optimization_results.yaml``) follow the
table. ``SweepSummary`` prints the same at the end of every ``-m`` run (``configs/hydra/default.yaml``). A grid
sweep's jobs that have not started yet (the suite's later runs, while its first ones train) are rows too:
``planned`` expands the sweep of its last start (``multirun.yaml``) as Hydra's basic sweeper does.

A job that fails does not end the sweep: it records its error in the sweep dir (``record_failure``), the
others go on, and the summary names it; the sweep then exits with the failed jobs' status.
"""

from __future__ import annotations

import itertools
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from her.checkpoint_file import append_atomic
from training.metrics import read_records

FAILURES = "failed_jobs.jsonl"
"""In a sweep dir: one JSON line per failed job (``job``, ``overrides``, ``status``, ``error``)."""

COLUMNS = ("epoch", "env_steps", "world_size", "eval_success_rate", "train_success_rate", "wall_s")


@dataclass(frozen=True)
class JobResult:
    """One job of a sweep: its directory, its command-line overrides, its last metrics record (``None`` when it
    wrote none: failed, or still running), for a failed job its exit status and error message, and whether it has
    started (``False``: a job of the sweep that has no directory yet, whose ``path`` is the sweep dir)."""

    path: Path
    overrides: tuple[str, ...]
    final: dict[str, Any] | None
    status: int | None = None
    error: str | None = None
    started: bool = True


def record_failure(sweep_dir: Path, job: str, overrides: list[str], status: int, error: str) -> None:
    """Record that job ``job`` (its folder's name) of the sweep in ``sweep_dir`` failed with exit ``status``."""
    line = {"job": job, "overrides": overrides, "status": status, "error": error}
    append_atomic(sweep_dir / FAILURES, (json.dumps(line) + "\n").encode())


def failures(sweep_dir: Path) -> dict[str, dict[str, Any]]:
    """The failed jobs of the sweep in ``sweep_dir``: job folder name -> its ``record_failure`` record."""
    path = sweep_dir / FAILURES
    return {r["job"]: r for r in read_records(path)} if path.is_file() else {}


def _job_number(path: Path) -> tuple[int, str]:
    match = re.match(r"(\d+)", path.name)
    return (int(match.group(1)) if match else -1, path.name)


def planned(sweep_dir: Path) -> list[tuple[str, ...]]:
    """The overrides of each job that the last start of the sweep in ``sweep_dir`` launches: its sweeper's
    ``params`` and its command line's overrides (``multirun.yaml``) expanded into their grid by Hydra's basic sweeper.
    Empty where the dir holds no ``multirun.yaml`` or another sweeper chose the jobs (Optuna's trials are not known
    ahead)."""
    path = sweep_dir / "multirun.yaml"
    if not path.is_file():
        return []
    hydra = yaml.safe_load(path.read_text())["hydra"]
    sweeper = hydra.get("sweeper") or {}
    if not str(sweeper.get("_target_", "")).endswith(".BasicSweeper"):
        return []
    arguments = [f"{key}={value}" for key, value in (sweeper.get("params") or {}).items()]
    overrides = OverridesParser.create().parse_overrides(arguments + list(hydra["overrides"]["task"]))
    batches = BasicSweeper.split_arguments(overrides, max_batch_size=None)
    return [tuple(job) for job in itertools.chain.from_iterable(batches)]


def collect(sweep_dir: Path) -> list[JobResult]:
    """The jobs under ``sweep_dir`` (each a folder with ``.hydra/overrides.yaml``, or a failed job that wrote none),
    in job-number order, then the jobs of the sweep's last start that have not started (``planned``)."""
    failed = failures(sweep_dir)
    results = []
    for overrides_file in sweep_dir.glob("*/.hydra/overrides.yaml"):
        job = overrides_file.parents[1]
        metrics = job / "metrics.jsonl"
        records = read_records(metrics) if metrics.exists() else []
        failure = failed.pop(job.name, {})
        overrides = tuple(yaml.safe_load(overrides_file.read_text()) or ())
        final = records[-1] if records else None
        results.append(JobResult(job, overrides, final, failure.get("status"), failure.get("error")))
    for name, f in failed.items():  # refused before it wrote its Hydra files
        results.append(JobResult(sweep_dir / name, tuple(f["overrides"]), None, f["status"], f["error"]))
    results.sort(key=lambda r: _job_number(r.path))
    seen = {frozenset(r.overrides) for r in results}
    waiting = [job for job in planned(sweep_dir) if frozenset(job) not in seen]
    return results + [JobResult(sweep_dir, job, None, started=False) for job in waiting]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def format_table(results: list[JobResult], columns: tuple[str, ...] = COLUMNS) -> str:
    """A Markdown table: job folder, the overrides not shared by every job, then ``columns`` of the final record."""
    shared = set.intersection(*(set(r.overrides) for r in results)) if len(results) > 1 else set()
    header = ["job", "overrides", *columns]
    rows = [header, ["---"] * len(header)]
    for r in results:
        varying = " ".join(o for o in r.overrides if o not in shared)
        if not r.started:
            rows.append(["-", varying, "not started", *[""] * (len(columns) - 1)])
        elif r.status is not None:
            rows.append([r.path.name, varying, f"failed (exit {r.status})", *[""] * (len(columns) - 1)])
        elif r.final is None:
            rows.append([r.path.name, varying, "no metrics.jsonl (failed or unfinished)", *[""] * (len(columns) - 1)])
        else:
            rows.append([r.path.name, varying, *(_cell(r.final.get(c)) for c in columns)])
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def best_parameters(sweep_dir: Path) -> dict[str, Any] | None:
    """An Optuna sweep's ``{"name": ..., "best_params": {...}, "best_value": ...}``, or ``None``."""
    path = sweep_dir / "optimization_results.yaml"
    return yaml.safe_load(path.read_text()) if path.exists() else None


def summary(sweep_dir: Path) -> str:
    results = collect(sweep_dir)
    if not results:
        return f"no jobs under {sweep_dir}"
    waiting = sum(not r.started for r in results)
    text = f"sweep {sweep_dir}: {len(results)} jobs" + (f", {waiting} not started" if waiting else "")
    text += "\n" + format_table(results)
    for r in results:
        if r.status is not None:
            text += f"\nfailed: {r.path.name}: {r.error}"
    best = best_parameters(sweep_dir)
    if best is not None:
        params = " ".join(f"{k}={v}" for k, v in best["best_params"].items())
        text += f"\nbest ({best.get('name', 'optuna')}): value {best['best_value']} with {params}"
    return text


class SweepSummary(Callback):
    """Hydra callback: prints ``summary`` of the sweep dir when a multirun ends, then, when jobs failed, exits
    with the highest of their exit statuses. A sweep started again into the same dir (``configs/suite/``) runs each
    job again: the failures recorded by the start before are dropped when it begins."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        (Path(config.hydra.sweep.dir) / FAILURES).unlink(missing_ok=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        print(summary(sweep_dir), flush=True)
        failed = failures(sweep_dir)
        if failed:
            print(f"error: {len(failed)} job(s) of the sweep failed: {', '.join(failed)}", file=sys.stderr)
            sys.exit(max(int(r["status"]) for r in failed.values()))
