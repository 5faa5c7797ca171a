"""One row per job of a sweep: the table that ``scripts/summarize.py`` and every ``-m`` run print.

Each row shows the overrides that differ between the jobs and the final epoch's metrics (the last line of
each job's ``metrics.jsonl``); an Optuna sweep's best parameters (``optimization_results.yaml``) follow the
table. ``SweepSummary`` prints the same at the end of every ``-m`` run (``configs/hydra/default.yaml``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

COLUMNS = ("epoch", "env_steps", "world_size", "eval_success_rate", "train_success_rate", "wall_s")


@dataclass(frozen=True)
class JobResult:
    """One job of a sweep: its directory, its command-line overrides, and its last metrics record (``None``
    when it wrote none: failed, or still running)."""

    path: Path
    overrides: tuple[str, ...]
    final: dict[str, Any] | None


def _job_number(path: Path) -> tuple[int, str]:
    match = re.match(r"(\d+)", path.name)
    return (int(match.group(1)) if match else -1, path.name)


def collect(sweep_dir: Path) -> list[JobResult]:
    """The jobs under ``sweep_dir`` (each a folder with ``.hydra/overrides.yaml``), in job-number order."""
    results = []
    for overrides_file in sorted(sweep_dir.glob("*/.hydra/overrides.yaml"), key=lambda p: _job_number(p.parents[1])):
        job = overrides_file.parents[1]
        metrics = job / "metrics.jsonl"
        lines = metrics.read_text().splitlines() if metrics.exists() else []
        final = json.loads(lines[-1]) if lines else None
        results.append(JobResult(job, tuple(yaml.safe_load(overrides_file.read_text()) or ()), final))
    return results


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
        if r.final is None:
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
    text = f"sweep {sweep_dir}: {len(results)} jobs\n" + format_table(results)
    best = best_parameters(sweep_dir)
    if best is not None:
        params = " ".join(f"{k}={v}" for k, v in best["best_params"].items())
        text += f"\nbest ({best.get('name', 'optuna')}): value {best['best_value']} with {params}"
    return text


class SweepSummary(Callback):
    """Hydra callback: prints ``summary`` of the sweep dir when a multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        print(summary(Path(config.hydra.sweep.dir)))
