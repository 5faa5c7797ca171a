"""The markdown tables of a report section: one row per run, and the statistics across the seeds of each group of
runs (IQM and mean with 95% bootstrap intervals, ``training.statistics``).

A run's row: the eval success rate at each milestone and at the end, as the mean of the last ``window``
evaluations; the env steps, TFLOP of updates and training wall time at which that mean first reached the
threshold; and the run's wall time. The statistics table, for each group (the runs that share a variant) of two
or more runs: the IQM and the mean over its seeds of the success at each milestone and of the env steps, TFLOP
and wall time to the threshold (one row where they are the same, below 4 seeds), with 95% intervals from
``MIN_SEEDS`` seeds on; no wall time where the group's runs ran on different CPUs. A seed that has not reached
the threshold counts with its last evaluation's env steps, TFLOP and wall time, a lower bound of its own; a
statistic over such a seed is a lower bound too and shows ``>=``, and the table says how many seeds reached the
threshold.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from training.curves import step_label
from training.run_results import Reaching, Run, at_steps, duration, reaching, short, tflop_text, trailing_mean
from training.statistics import MIN_SEEDS, STATISTICS, Estimate, estimate


def row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def head(first: Sequence[str], milestones: Sequence[int], last: Sequence[str]) -> list[str]:
    cells = [*first, *[step_label(m) for m in milestones], *last]
    return [row(cells), "|" + "---|" * len(cells)]


def groups(runs: Sequence[Run]) -> dict[str, list[Run]]:
    """``runs`` by variant, in the order the variants first appear."""
    by_variant: dict[str, list[Run]] = {}
    for run in runs:
        by_variant.setdefault(run.variant, []).append(run)
    return by_variant


def run_name(run: Run) -> str:
    name = f"seed {run.seed}" if run.seed is not None else run.name
    return f"{run.variant}, {name}" if run.variant else name


def lowest_after(run: Run, mean: np.ndarray, threshold: float) -> str:
    """``'0.48 at 600k'``: the lowest window ``mean`` of ``run`` after the evaluation at which it first reached
    ``threshold`` (``-`` where it has not, or has no evaluation after that one)."""
    hits = np.flatnonzero(mean >= threshold)
    if not len(hits) or hits[0] + 1 >= len(mean):
        return "-"
    i = hits[0] + 1 + int(np.argmin(mean[hits[0] + 1 :]))
    return f"{mean[i]:.2f} at {step_label(int(run.steps[i]))}"


def runs_table(runs: Sequence[Run], milestones: Sequence[int], threshold: float, window: int, dip: bool = False) -> str:
    """One row per run (see the module docstring); a ``CPU`` column where runs name their CPU; with ``dip``, the
    lowest success after the run first reached the threshold (``lowest_after``)."""
    cpu_column = any(run.cpu for run in runs)
    to = f"to {threshold:g}"
    lines = head(["run"], milestones, ["end", f"env steps {to}", f"TFLOP {to}", f"wall {to}", "wall of the run",
                                       *([f"lowest after {threshold:g}"] if dip else []),
                                       *(["CPU"] if cpu_column else [])])  # fmt: skip
    for run in runs:
        mean = trailing_mean(run.success, window)
        cells = [run_name(run)]
        for m in milestones:
            value = at_steps(run, mean, m)
            cells.append("-" if value is None else f"{value:.2f}")
        cells.append(f"{mean[-1]:.2f} at {step_label(int(run.steps[-1]))}")
        hit = reaching(run, mean, threshold)
        cells += [step_label(hit.steps), tflop_text(hit.tflop), duration(hit.wall_s)] if hit.reached else \
            ["not yet", "-", "-"]  # fmt: skip
        cells.append(duration(float(run.wall_s[-1])))
        cells += [lowest_after(run, mean, threshold)] if dip else []
        cells += [run.cpu] if cpu_column else []
        lines.append(row(cells))
    return "\n".join(lines)


def steps_text(steps: float) -> str:
    """``256666.7 -> '257k'``, ``833.3 -> '833'``: a statistic of env steps, rounded to thousands from 10k on."""
    return step_label(round(steps, -3 if steps >= 1e4 else 0))


def wall_estimate(estimate_: Estimate) -> str:
    """``'24.6 [22.3, 26.9] min'``: all three numbers in the unit of the value (see ``duration``)."""
    minutes = estimate_.value >= 120
    return estimate_.text(lambda s: f"{s / 60:.1f}" if minutes else f"{s:.1f}", "min" if minutes else "s")


def statistics_cells(group: Sequence[Run], statistic: str, milestones: Sequence[int], threshold: float,
                     window: int) -> list[str]:  # fmt: skip
    """A statistics row's values for ``group``: ``statistic`` of the success at each milestone (``-`` where a
    run ended before it), and of the env steps, TFLOP and wall to ``threshold`` (lower bounds where a seed has
    not reached it; no wall where the runs ran on different CPUs)."""
    means = [trailing_mean(run.success, window) for run in group]
    cells = []
    for m in milestones:
        values = [at_steps(run, mean, m) for run, mean in zip(group, means)]
        found = [v for v in values if v is not None]
        cells.append(estimate(found, statistic).text(lambda v: f"{v:.2f}") if len(found) == len(values) else "-")
    hits = [reaching(run, mean, threshold) for run, mean in zip(group, means)]
    bound = not all(h.reached for h in hits)

    def of(value: Callable[[Reaching], float]) -> Estimate:
        return estimate([value(h) for h in hits], statistic, lower_bound=bound)

    cells.append(of(lambda h: h.steps).text(steps_text))
    cells.append(of(lambda h: h.tflop).text(tflop_text))
    cells.append(wall_estimate(of(lambda h: h.wall_s)) if len({run.cpu for run in group}) == 1 else "-")
    return cells


def statistic_rows(n: int) -> list[tuple[str, str]]:
    """``(statistic, its label)`` of the rows for ``n`` seeds: the IQM and the mean from 4 seeds on; below that
    the IQM cuts nothing and is the mean, one row."""
    interval = " [95% CI]" if n >= MIN_SEEDS else ""
    if n < 4:
        return [("mean", ("IQM = mean" if n >= MIN_SEEDS else "mean") + interval)]
    return [(statistic, statistic + interval) for statistic in STATISTICS]


def statistics_table(runs: Sequence[Run], milestones: Sequence[int], threshold: float, window: int) -> str | None:
    """The IQM and mean over the seeds of each group of two or more runs (see the module docstring); ``None``
    where no group has two runs."""
    multi = {variant: group for variant, group in groups(runs).items() if len(group) > 1}
    if not multi:
        return None
    to = f"to {threshold:g}"
    lines = head(["seeds", "statistic"], milestones,
                 [f"reached {threshold:g}", f"env steps {to}", f"TFLOP {to}", f"wall {to}"])  # fmt: skip
    for variant, group in multi.items():
        means = [trailing_mean(run.success, window) for run in group]
        reached = sum(reaching(run, mean, threshold).reached for run, mean in zip(group, means))
        name = f"{variant}, {len(group)} seeds" if variant else f"{len(group)} seeds"
        for i, (statistic, label) in enumerate(statistic_rows(len(group))):
            cells = statistics_cells(group, statistic, milestones, threshold, window)
            lines.append(row([name, label, *cells[: len(milestones)], f"{reached} of {len(group)}" if i == 0 else "",
                              *cells[len(milestones):]]))  # fmt: skip
    return "\n".join(lines)


def grid_table(runs: Sequence[Run], window: int) -> str:
    """The table of a grid section: ``runs`` are labeled with the values of its row and column keys
    (``Run.labels``); a row per row value (numbers in order), a column per column value (in the order of ``runs``),
    each cell the mean of its runs' end success (the mean of their last ``window`` evaluations) with the min-max
    where they differ, and the env steps of the row's runs."""
    rows = sorted({run.labels[0] for run in runs}, key=lambda v: (not isinstance(v, int | float), v))  # type: ignore[operator]
    columns = list(dict.fromkeys(run.labels[1] for run in runs))
    names = [part.split("=", 1)[0] for part in runs[0].variant.split(", ")]
    lines = head([names[0], "env steps"], [], [f"{names[1]}={short(c)}" for c in columns])
    for value in rows:
        in_row = [run for run in runs if run.labels[0] == value]
        ends = [int(run.steps[-1]) for run in in_row]
        low, high = step_label(min(ends)), step_label(max(ends))
        cells = [short(value), low if low == high else f"{low}-{high}"]
        for column in columns:
            values = [float(trailing_mean(r.success, window)[-1]) for r in in_row if r.labels[1] == column]
            if not values:
                cells.append("-")
            elif f"{min(values):.2f}" == f"{max(values):.2f}":
                cells.append(f"{values[0]:.2f}")
            else:
                cells.append(f"{sum(values) / len(values):.2f} ({min(values):.2f}-{max(values):.2f})")
        lines.append(row(cells))
    return "\n".join(lines)
