"""The measured tables and curves of docs/results.md, and README.md's figures, built from the committed run data in
docs/results/ (``scripts/report.py`` is the command line).

``docs/results/report.yaml`` lists the sections: each names its runs (dirs below docs/results/ holding a
``metrics.jsonl`` and the run's resolved ``config.yaml``), the threshold and the env-step milestones of its
table, and the curve to draw. In docs/results.md each section's block stands between
``<!-- report:NAME -->`` and ``<!-- /report:NAME -->``; the text around the blocks is written by hand.

Each section's block holds its tables (``training.report_tables``): one row per run, with the env steps, TFLOP of
updates and training wall time to ``threshold``; then, for each group of two or more runs, the IQM and mean
over its seeds with 95% bootstrap intervals (``training.statistics``). A section with ``label_keys`` (config keys
such as ``buffer.motion_priority``) is a sweep: each row is labeled with those keys' values from the run's
config, and the runs that share them form a group; a section's ``label_defaults`` (key -> value) gives the value
of a label key for runs whose config lacks it (runs made before the option existed, which ran as its default).
A section's ``cpu`` names the CPU its wall times were measured on; where its runs ran on different CPUs it maps
each run to its CPU, and the table gets a CPU column. Its curve (``training.curves``) draws each group in its
own colour, labeled by the label keys whose values differ between the groups.

``readme`` in ``report.yaml`` lists README.md's figures, each from one section's runs: a bullet with the eval
success rate (the same window means as the section's table) at ``at`` env steps (``null``: at the end of each
run), the env steps, TFLOP and training time at which it first reached the section's threshold, and the training
time to ``at``, linked to the section in docs/results.md; from ``MIN_SEEDS`` seeds on as "IQM [95% CI] over N
seeds", below that as the range over the seeds (``training.report_readme``). They stand in README.md between
``<!-- report:readme -->`` and ``<!-- /report:readme -->``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from omegaconf import OmegaConf

from training.curves import Curve, PlotError, plot, smoothed
from training.report_tables import groups, runs_table, statistics_table
from training.run_results import ReportError, Run, label_name, load_run, short

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

    def where(self) -> str:
        """The CPU of the runs, as the footnote and README say it."""
        return self.cpu if isinstance(self.cpu, str) else "the CPU of each row"


def label_keys(value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"label_keys must be a list of config keys, got {value!r}")
    return value


def label_defaults(value: object, keys: Sequence[str]) -> dict[str, object]:
    if not isinstance(value, dict) or not set(value) <= set(keys):
        raise ValueError(f"label_defaults must map some of label_keys {list(keys)} to values, got {value!r}")
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


def load_run_of(section: Section, data: Path, name: str) -> Run:
    """The run ``name`` of ``section``, labeled with its CPU where the section's runs ran on different ones."""
    run = load_run(data / name, section.label_keys, section.label_defaults)
    return run if isinstance(section.cpu, str) else replace(run, cpu=section.cpu[name])


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
                )
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ReportError(f"{spec}: section {name!r} is malformed ({err})") from None
    return sections


def section_block(section: Section, data: Path) -> tuple[str, list[Run]]:
    run_dirs = [data / r for r in section.runs]
    runs = [load_run_of(section, data, r) for r in section.runs]
    block = runs_table(runs, section.milestones, section.threshold, section.window)
    what = "each evaluation on its own" if section.window == 1 else f"the mean of the last {section.window} evaluations"
    block += (
        f"\n\nEval success rate: {what} at each point; TFLOP: the matrix products of the updates so far; wall: "
        f"training time (collection, updates, evaluation) on {section.where()}. Data: "
        + ", ".join(f"[`{d.relative_to(data.parent.parent).as_posix()}`]({d.relative_to(data.parent).as_posix()})"
                    for d in run_dirs)  # fmt: skip
        + "."
    )
    statistics = statistics_table(runs, section.milestones, section.threshold, section.window)
    if statistics is not None:
        block += f"\n\n{statistics}\n\n" + statistics_note(statistics)
    if section.curve:
        block += f"\n\n![{runs[0].env_id}: eval success rate against env steps]({section.curve})"
    return block, runs


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


def draw_curve(section: Section, runs: Sequence[Run], data: Path, out: Path) -> None:
    """The section's curve to ``out``: each run's success (smoothed over ``section.smooth`` evaluations), by group,
    labeled by ``legend_labels``."""
    labels = legend_labels(section.label_keys, runs)
    curves = [Curve(data / r.name, r.env_id, r.seed, r.steps, r.success, labels[r.variant]) for r in runs]
    ylabel = f"eval success rate, mean of last {section.smooth} evals" if section.smooth > 1 else None
    try:
        plot([smoothed(c, section.smooth) for c in curves], "eval_success_rate", out, ylabel)
    except PlotError as err:
        raise ReportError(f"section {section.name!r}: {err}") from None


def replace_block(doc: str, name: str, block: str, doc_name: str = DOC.name) -> str:
    pattern = re.compile(rf"(<!-- report:{re.escape(name)} -->\n)(?:.*?\n)?(<!-- /report:{re.escape(name)} -->)", re.S)
    if not pattern.search(doc):
        raise ReportError(f"{doc_name}: no '<!-- report:{name} -->' ... '<!-- /report:{name} -->' block")
    return pattern.sub(lambda m: m.group(1) + block + "\n" + m.group(2), doc)


def build(doc_path: Path, data: Path, draw: bool) -> tuple[str, str]:
    """``(current doc, regenerated doc)``; with ``draw``, also writes each section's curve."""
    current = doc_path.read_text()
    doc = current
    for section in load_sections(data / "report.yaml"):
        block, runs = section_block(section, data)
        doc = replace_block(doc, section.name, block)
        if draw and section.curve:
            draw_curve(section, runs, data, doc_path.parent / section.curve)
    return current, doc
