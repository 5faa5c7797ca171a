"""Learning curves of runs, drawn to a PNG: what ``scripts/plot.py`` and ``scripts/report.py`` draw."""

from __future__ import annotations

import glob
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from training.metrics import read_records  # noqa: E402


class PlotError(Exception):
    """Bad input: no runs found, or a run that cannot be read."""


@dataclass
class Curve:
    """One run's metric: ``steps`` ``[n]`` env steps, ``values`` ``[n]``; ``group``: the variant it belongs to
    (runs of one env and group are drawn in one colour, with their mean), ``""`` for all runs alike."""

    run_dir: Path
    env_id: str
    seed: int | None
    steps: np.ndarray
    values: np.ndarray
    group: str = ""


def find_runs(patterns: Sequence[str]) -> list[Path]:
    """Run dirs (dirs with a ``metrics.jsonl``) at or below the paths that ``patterns`` glob to."""
    runs: set[Path] = set()
    for pattern in patterns:
        matches = [Path(p) for p in glob.glob(pattern)]
        if not matches:
            raise PlotError(f"{pattern}: no such file or directory")
        for path in matches:
            runs.update(m.parent for m in ([path] if path.name == "metrics.jsonl" else path.rglob("metrics.jsonl")))
    if not runs:
        raise PlotError(f"no run dirs (with metrics.jsonl) in {' '.join(patterns)}")
    return sorted(runs)


def load_curve(run_dir: Path, metric: str) -> Curve:
    """The ``metric`` of every epoch of a run, with its env id and seed from ``.hydra/config.yaml``."""
    config_path = run_dir / ".hydra" / "config.yaml"
    if not config_path.is_file():
        raise PlotError(f"{run_dir}: no .hydra/config.yaml to tell its env")
    cfg = OmegaConf.load(config_path)
    records = [r for r in read_records(run_dir / "metrics.jsonl") if r.get(metric) is not None]
    if not records:
        raise PlotError(f"{run_dir}/metrics.jsonl: no epoch has {metric!r}")
    steps = np.array([r["env_steps"] for r in records], dtype=np.int64)
    values = np.array([r[metric] for r in records], dtype=np.float64)
    return Curve(run_dir, str(cfg.env.id), cfg.get("seed"), steps, values)


def smoothed(curve: Curve, n: int) -> Curve:
    """``curve`` with each value replaced by the mean of the ``n`` values up to it (trailing), from its
    ``n``-th point on (all of it when ``n`` is 1)."""
    if n == 1:
        return curve
    if len(curve.values) < n:  # (np.convolve's "valid" would swap the operands)
        values = curve.values[:0]
    else:
        values = np.convolve(curve.values, np.full(n, 1.0 / n), mode="valid")
    return replace(curve, steps=curve.steps[n - 1 :][: len(values)], values=values)


def step_label(x: float, _pos: int | None = None) -> str:
    """``250 -> '250'``, ``340000 -> '340k'``, ``1500000 -> '1.5M'``."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:g}{suffix}"
    return f"{x:g}"


def spread(curves: Sequence[Curve]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``steps [k], mean [k], low [k], high [k]`` over ``curves`` at the ``k`` env steps all of them have."""
    steps = curves[0].steps
    for c in curves[1:]:
        steps = np.intersect1d(steps, c.steps)
    values = np.stack([c.values[np.searchsorted(c.steps, steps)] for c in curves])  # [runs, k]
    return steps, values.mean(axis=0), values.min(axis=0), values.max(axis=0)


def by_group(curves: Sequence[Curve]) -> dict[str, list[Curve]]:
    """``curves`` by their ``group``, in the order the groups first appear."""
    groups: dict[str, list[Curve]] = {}
    for c in curves:
        groups.setdefault(c.group, []).append(c)
    return groups


COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def plot(curves: Sequence[Curve], metric: str, out: Path, ylabel: str | None = None) -> dict[str, int]:
    """Draw one panel per env to ``out`` (PNG), each group of runs in its own colour with its mean and min-max
    band; returns the number of runs per env."""
    by_env: dict[str, list[Curve]] = defaultdict(list)
    for c in curves:
        by_env[c.env_id].append(c)
    cols = min(len(by_env), 3)
    rows = -(-len(by_env) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.0 * cols, 3.6 * rows), squeeze=False)
    for ax, (env_id, runs) in zip(axes.flat, sorted(by_env.items())):
        for i, (group, members) in enumerate(by_group(runs).items()):
            color, name = COLORS[i % len(COLORS)], f", {group}" if group else ""
            for c in members:
                ax.plot(c.steps, c.values, color=color, alpha=0.45, linewidth=0.8)
            steps, mean, low, high = spread(members)
            ax.fill_between(steps, low, high, color=color, alpha=0.2, linewidth=0, label=f"min-max{name}")
            marker = "o" if len(steps) <= 60 else None  # dots only where they can be told apart
            ax.plot(steps, mean, color=color, linewidth=2.0, marker=marker, markersize=3,
                    label=f"mean of {len(members)}{name}")  # fmt: skip
        ax.set_title(f"{env_id} ({len(runs)} run{'s' * (len(runs) > 1)})")
        ax.set_xlabel("env steps")
        ax.xaxis.set_major_formatter(FuncFormatter(step_label))
        ax.set_ylabel(ylabel or metric.replace("_", " "))
        if metric.endswith("success_rate"):
            ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    for ax in list(axes.flat)[len(by_env) :]:
        ax.set_visible(False)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return {env_id: len(runs) for env_id, runs in sorted(by_env.items())}
