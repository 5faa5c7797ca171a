"""Learning curves of runs, drawn to a PNG: what ``scripts/plot.py`` and ``scripts/report.py`` draw.

One panel per env; each group of runs in its own colour: a thin line per run and, at the env steps all its runs
have reached, their IQM with its 95% bootstrap band from ``MIN_SEEDS`` runs on (``training.statistics``), else
their mean. The legend goes inside a panel where it is small, else below the panels; a legend that does not fit
in the figure is refused (``PlotError``), so that no saved figure has one cut off or covering the curves.
"""

from __future__ import annotations

import glob
import textwrap
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.artist import Artist  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from training.metrics import read_records  # noqa: E402
from training.statistics import MIN_SEEDS, band  # noqa: E402


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


def common(curves: Sequence[Curve]) -> tuple[np.ndarray, np.ndarray]:
    """``steps [k], values [runs, k]``: ``curves`` at the ``k`` env steps all of them have."""
    steps = curves[0].steps
    for c in curves[1:]:
        steps = np.intersect1d(steps, c.steps)
    return steps, np.stack([c.values[np.searchsorted(c.steps, steps)] for c in curves])


def by_group(curves: Sequence[Curve]) -> dict[str, list[Curve]]:
    """``curves`` by their ``group``, in the order the groups first appear."""
    groups: dict[str, list[Curve]] = {}
    for c in curves:
        groups.setdefault(c.group, []).append(c)
    return groups


COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")
LEGEND_FONT = 8
INSIDE = (3, 36)
"""A legend of at most this many entries, none longer than this many characters, goes inside its panel where it
covers the least (``loc="best"``); any other goes below the panels, across the figure."""
WRAP = 60
"""Legend labels longer than this many characters wrap onto more lines."""
LINE_INCHES = 0.16
"""The height of one legend line at ``LEGEND_FONT``, with its spacing: what a legend below the panels adds."""


def center(members: Sequence[Curve]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None, str]:
    """``steps [k], center [k], low [k], high [k]`` of a group of runs at the env steps all of them have, and
    what the center is: the IQM with its 95% bootstrap band from ``MIN_SEEDS`` runs on, else the mean
    (no band), or the one run."""
    steps, values = common(members)
    n = len(members)
    if n == 1:
        return steps, values[0], None, None, "one run" if members[0].seed is None else f"seed {members[0].seed}"
    statistic = "IQM" if n >= MIN_SEEDS else "mean"
    middle, low, high = band(values, statistic)
    return steps, middle, low, high, f"IQM of {n} runs, 95% CI" if low is not None else f"mean of {n} runs"


Entry = tuple[Artist | tuple[Artist, ...], str]
"""A legend entry: its handle (a line, or a band and its line drawn as one) and its label."""


def draw_panel(ax: Axes, runs: Sequence[Curve], colors: dict[str, str]) -> list[Entry]:
    """Each group of ``runs`` in its colour: a thin line per run, and its ``center`` in bold with its band;
    returns the panel's legend entries."""
    entries: list[Entry] = []
    for group, members in by_group(runs).items():
        color = colors[group]
        if len(members) > 1:
            for c in members:
                ax.plot(c.steps, c.values, color=color, alpha=0.4, linewidth=0.7)
        steps, middle, low, high, what = center(members)
        marker = "o" if len(steps) <= 60 else None  # dots only where they can be told apart
        label = textwrap.fill(f"{group} ({what})" if group else what, WRAP)
        (line,) = ax.plot(steps, middle, color=color, linewidth=2.0, marker=marker, markersize=3, label=label)
        handle: Artist | tuple[Artist, ...] = line
        if low is not None and high is not None:
            handle = (ax.fill_between(steps, low, high, color=color, alpha=0.22, linewidth=0), line)
        entries.append((handle, label))
    if any(len(members) > 1 for members in by_group(runs).values()):
        (thin,) = ax.plot([], [], color="0.4", alpha=0.6, linewidth=0.7)
        entries.append((thin, "each run"))
    return entries


def place_legends(fig: Figure, axes: Sequence[Axes], entries: Sequence[Sequence[Entry]]) -> None:
    """Each panel's legend (``entries``, per panel) inside it where every panel's is small (``INSIDE``), else one
    legend of all entries below the panels, the figure made taller by its height."""
    unique: dict[str, Artist | tuple[Artist, ...]] = {}  # the first handle of each label, in order
    for panel in entries:
        for handle, label in panel:
            unique.setdefault(label, handle)
    if not unique:
        return
    most, longest = INSIDE
    if all(len(panel) <= most for panel in entries) and all(len(line) <= longest for label in unique
                                                            for line in label.splitlines()):  # fmt: skip
        for ax, panel in zip(axes, entries):
            if panel:
                ax.legend(*zip(*panel), loc="best", fontsize=LEGEND_FONT)
        return
    width, height = fig.get_size_inches()
    fig.set_size_inches(width, height + 0.25 + LINE_INCHES * sum(label.count("\n") + 1 for label in unique))
    fig.legend(list(unique.values()), list(unique), loc="outside lower center", fontsize=LEGEND_FONT)


def check_legends(fig: Figure, name: str) -> None:
    """Raise ``PlotError`` naming the figure ``name`` if a legend does not lie inside the figure, or one across the
    figure covers a panel (drawn first, so that the extents are those of the saved file)."""
    fig.canvas.draw()
    inside = fig.bbox.padded(1.0)  # a pixel of rounding
    panels = [ax.get_window_extent() for ax in fig.axes if ax.get_visible()]
    for legend in [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)]:
        box = legend.get_window_extent()
        if not (inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1)):
            raise PlotError(
                f"{name}: the legend does not fit in the figure (it spans x {box.x0:.0f}..{box.x1:.0f}, "
                f"y {box.y0:.0f}..{box.y1:.0f} px of {fig.bbox.width:.0f} x {fig.bbox.height:.0f}): shorten its labels"
            )
        if legend in fig.legends and any(box.overlaps(panel) for panel in panels):
            raise PlotError(f"{name}: the legend below the panels covers a panel")


def plot(
    curves: Sequence[Curve],
    metric: str,
    out: Path,
    ylabel: str | None = None,
    xlabel: str | None = None,
    runs_per_env: dict[str, int] | None = None,
) -> dict[str, int]:
    """Draw one panel per env to ``out`` (PNG), each group of runs in its own colour (``draw_panel``), with a
    legend that fits (``place_legends``, checked by ``check_legends``); returns the number of curves per env.
    ``xlabel``: what the curves' ``steps`` are when they are not env steps (a few values of a config key, such as
    the number of bits, each with a tick). ``runs_per_env``: the runs a panel's title counts, where a curve is not
    one run."""
    by_env: dict[str, list[Curve]] = defaultdict(list)
    for c in curves:
        by_env[c.env_id].append(c)
    colors = {group: COLORS[i % len(COLORS)] for i, group in enumerate(dict.fromkeys(c.group for c in curves))}
    cols = min(len(by_env), 3)
    rows = -(-len(by_env) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.0 * cols, 3.6 * rows), squeeze=False, layout="constrained")
    used = list(axes.flat)[: len(by_env)]
    entries = []
    for ax, (env_id, runs) in zip(used, sorted(by_env.items())):
        entries.append(draw_panel(ax, runs, colors))
        n_runs = (runs_per_env or {}).get(env_id, len(runs))
        ax.set_title(f"{env_id} ({n_runs} run{'s' * (n_runs > 1)})")
        ax.set_xlabel(xlabel or "env steps")
        if xlabel is None:
            ax.xaxis.set_major_formatter(FuncFormatter(step_label))
        else:
            ax.set_xticks(sorted({float(x) for c in runs for x in c.steps}))
        ax.set_ylabel(ylabel or metric.replace("_", " "))
        if metric.endswith("success_rate"):
            ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(by_env) :]:
        ax.set_visible(False)
    try:
        place_legends(fig, used, entries)
        check_legends(fig, out.name)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=120)
    finally:
        plt.close(fig)
    return {env_id: len(runs) for env_id, runs in sorted(by_env.items())}
