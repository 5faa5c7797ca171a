"""The measured tables and curves of docs/results.md (and of other results docs beside it, such as
docs/results_beyond_fetch.md), and README.md's figures, built from the committed run data in docs/results/
(``scripts/report.py`` is the command line).

``docs/results/report.yaml`` lists the sections: each names its runs (dirs below docs/results/ holding a
``metrics.jsonl`` and the run's resolved ``config.yaml``), the threshold and the env-step milestones of its
table, and the curve to draw. In docs/results.md, or in the doc a section names with ``doc`` (a file beside
docs/results.md), each section's block stands between ``<!-- report:NAME -->`` and ``<!-- /report:NAME -->``; the
text around the blocks is written by hand.

Each section's block holds its tables (``training.report_tables``): one row per run, with the env steps, TFLOP of
updates and training wall time to ``threshold``; then, for each group of two or more runs, the IQM and mean
over its seeds with 95% bootstrap intervals (``training.statistics``). A section with ``label_keys`` (config keys
such as ``buffer.motion_priority``) is a sweep: each row is labeled with those keys' values from the run's
config, and the runs that share them form a group; a section's ``label_defaults`` (key -> value) gives the value
of a label key for runs whose config lacks it (runs made before the option existed, which ran as its default).
A section's ``cpu`` names the CPU its wall times were measured on; where its runs ran on different CPUs it maps
each run to its CPU, and the table gets a CPU column. Its curve (``training.curves``) draws each group in its
own colour, labeled by the label keys whose values differ between the groups. A section's ``metrics`` lists the
success rates it shows: ``eval_success_rate`` (the default), then ``eval_avg_success_rate`` (the Polyak-averaged
actor that ``agent.eval_polyak`` evaluates): each run that logged one is a row and a curve of it, labeled
``evaluated=...``. ``dip: true`` adds the lowest success of each run after it first reached the threshold.
A section with ``baseline: RUN`` (one of its runs) labels its rows and curves by the label keys whose values differ
from that run's (``baseline`` where none do), and its footnote gives the baseline's values: a comparison of levers,
each changing one or two settings, reads without repeating every key in every row.

A section with ``grid: [ROW_KEY, COLUMN_KEY]`` (two config keys, e.g. ``env.n_bits`` and ``buffer.replay_k``) is a
grid instead (``training.report_tables.grid_table``): a row per value of the first key, a column per value of the
second, each cell the success rate at the end of the runs with those values; its curve draws those end values
against the first key, a line per value of the second.

``readme`` in ``report.yaml`` lists README.md's figures, each from one section's runs: a bullet with the eval
success rate (the same window means as the section's table) at ``at`` env steps (``null``: at the end of each
run), the env steps, TFLOP and training time at which it first reached the section's threshold, and the training
time to ``at``, linked to the section in docs/results.md; from ``MIN_SEEDS`` seeds on as "IQM [95% CI] over N
seeds", below that as the range over the seeds (``training.report_readme``). They stand in README.md between
``<!-- report:readme -->`` and ``<!-- /report:readme -->``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from training.curves import Curve, PlotError, plot, smoothed
from training.report_tables import grid_table, groups, runs_table, statistics_table
from training.run_results import EVALUATED, ReportError, Run, has_metric, label_name, load_run, short, trailing_mean

ROOT = Path(__file__).resolve().parent.parent  # the repository: docs/ beside this package
DATA = ROOT / "docs" / "results"
DOC = ROOT / "docs" / "results.md"
README = ROOT / "README.md"


@dataclass(frozen=True)
class Section:
    name: str
    runs: list[str]
    threshold: float
    milestones: list[int]
    window: int
    curve: str | None
    smooth: int
    label_keys: list[str]
    label_defaults: dict[str, object]
    cpu: str | dict[str, str]  # the CPU the runs' wall times were measured on, or each run's (run -> CPU)
    doc: str | None = None  # the results doc (a file beside docs/results.md) holding its block; None: results.md
    grid: tuple[str, str] | None = None  # a grid section's row and column keys
    metrics: tuple[str, ...] = ("eval_success_rate",)  # the success rates shown, each a row and curve of a run
    dip: bool = False  # the runs table shows each run's lowest success after it first reached the threshold
    baseline: str | None = None  # the run whose label values the others are labeled against

    def where(self) -> str:
        """The CPU of the runs, as the footnote and README say it."""
        return self.cpu if isinstance(self.cpu, str) else "the CPU of each row"

    def keys(self) -> list[str]:
        """The config keys its runs are labeled with: the grid's keys, or ``label_keys``."""
        return list(self.grid) if self.grid else self.label_keys

    def legend_keys(self) -> list[str]:
        """What its curves are labeled by: ``label_keys``, and ``evaluated`` where it shows several metrics."""
        return self.label_keys + (["evaluated"] if len(self.metrics) > 1 else [])


def label_keys(value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"label_keys must be a list of config keys, got {value!r}")
    return value


def label_defaults(value: object, keys: Sequence[str]) -> dict[str, object]:
    if not isinstance(value, dict) or not set(value) <= set(keys):
        raise ValueError(f"label_defaults must map some of label_keys {list(keys)} to values, got {value!r}")
    return value


def grid_keys(value: object, keys: Sequence[str]) -> tuple[str, str] | None:
    """``grid``: absent, or two config keys (a section has either ``grid`` or ``label_keys``)."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 2 or not all(isinstance(k, str) for k in value):
        raise ValueError(f"grid must be two config keys [row key, column key], got {value!r}")
    if keys:
        raise ValueError("a grid section is labeled by its grid keys: give it no label_keys")
    return value[0], value[1]


def doc_name(value: object) -> str | None:
    """``doc``: absent (docs/results.md), or the name of a markdown file beside it."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.endswith(".md") or "/" in value or value.startswith("."):
        raise ValueError(
            f"doc must name a markdown file beside docs/results.md (e.g. results_beyond_fetch.md), got {value!r}"
        )
    return value


def section_cpu(value: object, runs: Sequence[str]) -> str | dict[str, str]:
    """``cpu``: one CPU for all of a section's runs, or a mapping that names every run's."""
    if isinstance(value, dict):
        if set(value) != set(runs):
            raise ValueError(f"cpu must name the CPU of every run, {list(runs)}, and of no other, got {sorted(value)}")
        return {str(k): str(v) for k, v in value.items()}
    if not isinstance(value, str) or not value:
        raise ValueError(f"cpu must be the runs' CPU or a mapping run -> CPU, got {value!r}")
    return value


def baseline_run(value: object, runs: Sequence[str], keys: Sequence[str]) -> str | None:
    """``baseline``: absent, or one of the section's runs where the section has ``label_keys``."""
    if value is None:
        return None
    if not isinstance(value, str) or value not in runs:
        raise ValueError(f"baseline must name one of the section's runs {list(runs)}, got {value!r}")
    if not keys:
        raise ValueError(
            "baseline labels runs by the label_keys where they differ from it: give the section label_keys"
        )
    return value


def metric_names(value: object) -> tuple[str, ...]:
    """``metrics``: absent (``eval_success_rate``), or a list of keys of ``EVALUATED``, the first one
    ``eval_success_rate``."""
    if value is None:
        return ("eval_success_rate",)
    if not isinstance(value, list) or not value or value[0] != "eval_success_rate" or not set(value) <= set(EVALUATED):
        raise ValueError(f"metrics must list eval_success_rate, then any of {list(EVALUATED)[1:]}, got {value!r}")
    return tuple(value)


def load_run_of(section: Section, data: Path, name: str) -> Run:
    """The run ``name`` of ``section`` (its ``eval_success_rate``), labeled with its CPU where the section's runs
    ran on different ones."""
    return load_runs_of(section, data, name)[0]


def load_runs_of(section: Section, data: Path, name: str) -> list[Run]:
    """The run ``name`` of ``section`` once per metric of the section that it logged, labeled with its CPU where
    the section's runs ran on different ones, and with the actor evaluated (``evaluated``) where the section
    shows several metrics."""
    runs = []
    for metric in section.metrics:
        if metric != section.metrics[0] and not has_metric(data / name, metric):
            continue
        run = load_run(data / name, section.keys(), section.label_defaults, metric)
        if len(section.metrics) > 1:
            what = EVALUATED[metric]
            variant = f"{run.variant}, evaluated={what}" if run.variant else f"evaluated={what}"
            run = replace(run, variant=variant, labels=(*run.labels, what))
        runs.append(run if isinstance(section.cpu, str) else replace(run, cpu=section.cpu[name]))
    return runs


def load_sections(spec: Path) -> list[Section]:
    raw = OmegaConf.to_container(OmegaConf.load(spec), resolve=True)
    if not isinstance(raw, dict) or not isinstance(raw.get("sections"), dict):
        raise ReportError(f"{spec}: expected a mapping 'sections: {{NAME: {{runs: [...], ...}}}}'")
    sections = []
    for name, s in raw["sections"].items():
        try:
            sections.append(
                Section(
                    str(name),
                    [str(r) for r in s["runs"]],
                    float(s.get("threshold", 0.9)),
                    [int(m) for m in s.get("milestones", [])],
                    int(s.get("window", 10)),
                    s.get("curve"),
                    int(s.get("smooth", 1)),
                    keys := label_keys(s.get("label_keys", [])),
                    label_defaults(s.get("label_defaults", {}), keys),
                    section_cpu(s["cpu"], s["runs"]),
                    doc_name(s.get("doc")),
                    grid_keys(s.get("grid"), keys),
                    metric_names(s.get("metrics")),
                    bool(s.get("dip", False)),
                    baseline_run(s.get("baseline"), s["runs"], keys),
                )
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ReportError(f"{spec}: section {name!r} is malformed ({err})") from None
    return sections


def against_baseline(section: Section, runs: Sequence[Run], base: Sequence[object]) -> list[Run]:
    """``runs`` of a section with ``baseline``, each labeled by the label keys whose values differ from ``base`` (the
    baseline run's values; ``baseline`` where none differ), then by the actor evaluated where the section shows
    several metrics."""
    relabeled = []
    for run in runs:
        differ = [f"{label_name(key)}={short(value)}" for key, value, b in zip(section.label_keys, run.labels, base)
                  if short(value) != short(b)]  # fmt: skip
        variant = ", ".join(differ) or "baseline"
        if len(section.metrics) > 1:
            variant += f", evaluated={EVALUATED[run.metric]}"
        relabeled.append(replace(run, variant=variant))
    return relabeled


def baseline_note(section: Section, base: Sequence[object]) -> str:
    """The footnote's sentence naming the baseline run and its values of the label keys."""
    values = ", ".join(f"{label_name(k)}={short(v)}" for k, v in zip(section.label_keys, base))
    return (
        f" Baseline: `{section.baseline}` ({values}); the other runs' rows name the settings where they differ from it."
    )


def section_block(section: Section, data: Path) -> tuple[str, list[Run]]:
    run_dirs = [data / r for r in section.runs]
    loaded = {name: load_runs_of(section, data, name) for name in section.runs}
    runs = [run for name in section.runs for run in loaded[name]]
    base = loaded[section.baseline][0].labels if section.baseline else ()
    labeled = against_baseline(section, runs, base) if section.baseline else runs
    what = "each evaluation on its own" if section.window == 1 else f"the mean of the last {section.window} evaluations"
    links = ", ".join(f"[`{d.relative_to(data.parent.parent).as_posix()}`]({d.relative_to(data.parent).as_posix()})"
                      for d in run_dirs)  # fmt: skip
    if section.grid:
        block = grid_table(runs, section.window)
        block += (
            f"\n\nEval success rate at the end of each run ({what}): the mean over the runs of a cell, and their "
            f"min-max where they differ; env steps: the runs' budget. Data: {links}."
        )
        if section.curve:
            block += f"\n\n![{runs[0].env_id}: eval success rate at the end against {label_name(section.grid[0])}]"
            block += f"({section.curve})"
        return block, runs
    block = runs_table(labeled, section.milestones, section.threshold, section.window, section.dip)
    block += (
        f"\n\nEval success rate: {what} at each point; TFLOP: the matrix products of the updates so far; wall: "
        f"training time (collection, updates, evaluation) on {section.where()}."
        + (baseline_note(section, base) if section.baseline else "")
        + f" Data: {links}."
    )
    statistics = statistics_table(labeled, section.milestones, section.threshold, section.window)
    if statistics is not None:
        block += f"\n\n{statistics}\n\n" + statistics_note(statistics)
    if section.curve:
        block += f"\n\n![{runs[0].env_id}: eval success rate against env steps]({section.curve})"
    return block, labeled


def statistics_note(statistics: str) -> str:
    """The line under a statistics table: what it is, and what its ``-``, missing intervals and ``>=`` mean where
    it has them."""
    note = "Statistics over the seeds of the rows above ([how](results.md#statistics-over-seeds))"
    if "| mean |" in statistics:
        note += "; no interval below 3 seeds"
    if ">= " in statistics:
        note += "; >=: a lower bound, a seed that has not reached the threshold counting at its last evaluation"
    return note + "."


def legend_labels(keys: Sequence[str], runs: Sequence[Run]) -> dict[str, str]:
    """``variant -> label`` for a curve's legend, of runs labeled by the config ``keys``: only the keys whose values
    differ between the variants; the first variant with all of those, each other one with those where it differs
    from the first."""
    firsts = [group[0].labels for group in groups(runs).values()]
    varying = [i for i in range(len(keys)) if len({short(labels[i]) for labels in firsts}) > 1]
    labels = {}
    for j, group in enumerate(groups(runs).values()):
        shown = [i for i in varying if j == 0 or short(firsts[j][i]) != short(firsts[0][i])]
        labels[group[0].variant] = ", ".join(f"{label_name(keys[i])}={short(firsts[j][i])}" for i in shown)
    return labels


def grid_points(runs: Sequence[Run], column_key: str, window: int, data: Path) -> list[Curve]:
    """The curves of a grid section's plot: per value of its column key and per seed, the runs' end values ``[k]``
    at their row key's values (``Curve.steps``), grouped by the column key's value."""
    curves = []
    for column in dict.fromkeys(run.labels[1] for run in runs):
        for seed in dict.fromkeys(run.seed for run in runs if run.labels[1] == column):
            members = sorted((r for r in runs if r.labels[1] == column and r.seed == seed), key=lambda r: r.labels[0])
            x = np.array([r.labels[0] for r in members])
            y = np.array([trailing_mean(r.success, window)[-1] for r in members])
            group = f"{label_name(column_key)}={short(column)}"
            curves.append(Curve(data / members[0].name, members[0].env_id, seed, x, y, group))
    return curves


def draw_curve(section: Section, runs: Sequence[Run], data: Path, out: Path) -> None:
    """The section's curve to ``out``: each run's success (smoothed over ``section.smooth`` evaluations), by group,
    labeled by ``legend_labels``; for a grid, the end values against its row key (``grid_points``)."""
    try:
        if section.grid:
            row_key, column_key = section.grid
            plot(grid_points(runs, column_key, section.window, data), "eval_success_rate", out,
                 "eval success rate at the end", xlabel=label_name(row_key),
                 runs_per_env={runs[0].env_id: len(runs)})  # fmt: skip
            return
        labels = (
            {r.variant: r.variant for r in runs} if section.baseline else legend_labels(section.legend_keys(), runs)
        )
        curves = [Curve(data / r.name, r.env_id, r.seed, r.steps, r.success, labels[r.variant]) for r in runs]
        ylabel = f"eval success rate, mean of last {section.smooth} evals" if section.smooth > 1 else None
        n_runs = Counter(r.env_id for r in runs if r.metric == "eval_success_rate")  # a run of two metrics is one
        plot([smoothed(c, section.smooth) for c in curves], "eval_success_rate", out, ylabel, runs_per_env=n_runs)
    except PlotError as err:
        raise ReportError(f"section {section.name!r}: {err}") from None


def replace_block(doc: str, name: str, block: str, doc_name: str = DOC.name) -> str:
    pattern = re.compile(rf"(<!-- report:{re.escape(name)} -->\n)(?:.*?\n)?(<!-- /report:{re.escape(name)} -->)", re.S)
    if not pattern.search(doc):
        raise ReportError(f"{doc_name}: no '<!-- report:{name} -->' ... '<!-- /report:{name} -->' block")
    return pattern.sub(lambda m: m.group(1) + block + "\n" + m.group(2), doc)


def doc_paths(results_doc: Path, data: Path) -> list[Path]:
    """The docs that the sections of ``data/report.yaml`` fill: ``results_doc`` (docs/results.md), and the docs
    beside it that sections name with ``doc``."""
    named = {s.doc for s in load_sections(data / "report.yaml") if s.doc is not None}
    return [results_doc, *(results_doc.parent / name for name in sorted(named) if name != results_doc.name)]


def build(doc_path: Path, data: Path, draw: bool, results_doc: Path | None = None) -> tuple[str, str]:
    """``(current doc, regenerated doc)`` of ``doc_path`` with the blocks of the sections that name it with ``doc``,
    and, where it is ``results_doc`` (by default itself: docs/results.md), of those that name no doc; with ``draw``,
    also writes their curves."""
    results_doc = doc_path if results_doc is None else results_doc
    current = doc_path.read_text()
    doc = current
    for section in load_sections(data / "report.yaml"):
        if (results_doc.parent / (section.doc or results_doc.name)).resolve() != doc_path.resolve():
            continue
        block, runs = section_block(section, data)
        doc = replace_block(doc, section.name, block, doc_path.name)
        if draw and section.curve:
            draw_curve(section, runs, data, doc_path.parent / section.curve)
    return current, doc
