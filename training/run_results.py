"""The committed results of one run as the report reads them (a dir holding the run's ``metrics.jsonl`` and its
resolved ``config.yaml``): per evaluation, env steps, eval success rate, training wall time and the TFLOP of the
updates so far (``training.update_cost``); and where a run first reached a threshold."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from training.metrics import read_records
from training.update_cost import UpdateCostError, flops_per_update


class ReportError(Exception):
    """A section whose data is missing or malformed, or a doc without the section's markers."""


@dataclass(frozen=True)
class Run:
    """One committed run: ``steps``, ``success``, ``wall_s``, ``tflop`` ``[n]`` per evaluation, and its seed;
    ``variant``: ``'key=value, ...'`` of a section's label keys in its config (the last part of each key), and
    ``labels`` those values as the config gives them."""

    name: str
    seed: int | None
    env_id: str
    steps: np.ndarray
    success: np.ndarray
    wall_s: np.ndarray
    tflop: np.ndarray
    variant: str = ""
    cpu: str = ""  # where a section's runs ran on different CPUs: this run's
    labels: tuple[object, ...] = ()
    metric: str = "eval_success_rate"  # the metrics.jsonl key ``success`` holds (``EVALUATED``)


def short(value: object) -> str:
    """A config value in a table cell: mappings as ``k=v`` pairs without Hydra's ``_target_``-like keys."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={short(v)}" for k, v in value.items() if not str(k).startswith("_")) + "}"
    return str(value)


# The success rates a section can show, by metrics.jsonl key, and how a table row names the actor evaluated.
EVALUATED = {"eval_success_rate": "actor", "eval_avg_success_rate": "Polyak-averaged actor"}


def has_metric(run_dir: Path, metric: str) -> bool:
    """Whether the run's metrics.jsonl holds ``metric`` (an agent with ``eval_polyak`` logs ``eval_avg_*``)."""
    return any(r.get(metric) is not None for r in read_records(run_dir / "metrics.jsonl"))


def load_run(
    run_dir: Path,
    label_keys: Sequence[str] = (),
    label_defaults: Mapping[str, object] | None = None,
    metric: str = "eval_success_rate",
) -> Run:
    """The run in ``run_dir`` with ``metric`` (a key of ``EVALUATED``) as its success, labeled by the config's
    values of ``label_keys``."""
    config = run_dir / "config.yaml"
    if not config.is_file() or not (run_dir / "metrics.jsonl").is_file():
        raise ReportError(f"{run_dir}: expected metrics.jsonl and config.yaml")
    cfg = OmegaConf.load(config)
    records = [r for r in read_records(run_dir / "metrics.jsonl") if r.get(metric) is not None]
    if not records:
        raise ReportError(f"{run_dir}/metrics.jsonl: no evaluated epoch with {metric}")
    if any("updates" not in r for r in records):
        raise ReportError(f"{run_dir}/metrics.jsonl: an evaluated epoch without 'updates' (for its TFLOP)")
    parts, values = [], []
    for key in label_keys:
        value = OmegaConf.select(cfg, key, default=(label_defaults or {}).get(key, ReportError))
        if value is ReportError:
            raise ReportError(f"{config}: no key {key!r} (label_keys)")
        value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        parts.append(f"{label_name(key)}={short(value)}")
        values.append(value)
    container = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)
    try:
        flops = flops_per_update(container)
    except UpdateCostError as err:
        raise ReportError(f"{config}: {err}") from None
    updates = np.array([r["updates"] * r.get("world_size", 1) for r in records], dtype=np.float64)
    return Run(
        run_dir.name,
        cfg.get("seed"),
        str(cfg.env.id),
        np.array([r["env_steps"] for r in records], dtype=np.int64),
        np.array([r[metric] for r in records], dtype=np.float64),
        np.array([r["wall_s"] for r in records], dtype=np.float64),
        updates * flops / 1e12,
        ", ".join(parts),
        labels=tuple(values),
        metric=metric,
    )


def label_name(key: str) -> str:
    """How a label key names itself in a table: its last part (``buffer.replay_k -> replay_k``)."""
    return key.rsplit(".", 1)[-1]


def trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
    """``[n] -> [n]``: the mean of each value and the ``window - 1`` before it (fewer at the start); with
    ``window=1`` the values themselves (a difference of running sums rounds: 0.9 would be 0.8999999999999999, under
    a threshold of 0.9)."""
    if window == 1:
        return np.asarray(values, dtype=np.float64)
    sums = np.cumsum(np.concatenate([[0.0], values]))
    idx = np.arange(1, len(values) + 1)
    return (sums[idx] - sums[np.maximum(idx - window, 0)]) / np.minimum(idx, window)


def at_steps(run: Run, values: np.ndarray, step: int) -> float | None:
    """``values`` ``[n]`` at the last evaluation at or before ``step`` env steps; ``None`` if the run ended before
    it (it must have reached ``step``, give or take one epoch)."""
    if run.steps[-1] < step:
        return None
    return float(values[np.searchsorted(run.steps, step, side="right") - 1])


@dataclass(frozen=True)
class Reaching:
    """Env steps, TFLOP and training wall seconds of a run at the first evaluation whose window mean reached a
    threshold (``reached``), or at its last evaluation where none did: a lower bound of each."""

    steps: int
    tflop: float
    wall_s: float
    reached: bool


def reaching(run: Run, values: np.ndarray, threshold: float) -> Reaching:
    """Where ``values`` ``[n]`` (a window mean of ``run``'s success) first reached ``threshold``, else the run's
    end (see ``Reaching``)."""
    hits = np.flatnonzero(values >= threshold)
    i = int(hits[0]) if len(hits) else len(values) - 1
    return Reaching(int(run.steps[i]), float(run.tflop[i]), float(run.wall_s[i]), bool(len(hits)))


def duration(seconds: float) -> str:
    """``23.4 -> '23.4 s'``, ``1500 -> '25.0 min'``."""
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def tflop_text(tflop: float) -> str:
    """``264.8 -> '265'``, ``31.04 -> '31.0'``, ``1.234 -> '1.23'``, ``0.02654 -> '0.0265'``."""
    if tflop >= 100:
        return f"{tflop:.0f}"
    if tflop >= 10:
        return f"{tflop:.1f}"
    return f"{tflop:.3g}"
