"""The measured tables and curves of docs/results.md, and README.md's figures, built from the committed run data in
docs/results/ (``scripts/report.py`` is the command line).

``docs/results/report.yaml`` lists the sections: each names its runs (dirs below docs/results/ holding a
``metrics.jsonl`` and the run's resolved ``config.yaml``), the threshold and the env-step milestones of its
table, and the curve to draw. In docs/results.md each section's block stands between
``<!-- report:NAME -->`` and ``<!-- /report:NAME -->``; the text around the blocks is written by hand.

A table has one row per run: the eval success rate at each milestone and at the end as the mean of the last
``window`` evaluations (the noise of a few eval episodes averages out), the first env steps and the training
wall time at which that mean reached ``threshold``, and the run's wall time; then the mean over runs. A
section with ``label_keys`` (config keys such as ``buffer.motion_priority``) is a sweep: each row is labeled with
those keys' values from the run's config, and the runs that share them get their own mean row; a section's
``label_defaults`` (key -> value) gives the value of a label key for runs whose config lacks it (runs made before
the option existed, which ran as its default). A section's ``cpu`` names the CPU its wall times were measured
on; where its runs ran on different CPUs it maps each run to its CPU, and the table gets a CPU column.

``readme`` in ``report.yaml`` lists README.md's figures, each from one section's runs: a bullet with the eval
success rate (the same window means as the section's table) at ``at`` env steps (``null``: at the end of each
run), the env steps and training time at which it first reached the section's threshold, and the training time to
``at``, linked to the section in docs/results.md. They stand in README.md between ``<!-- report:readme -->`` and
``<!-- /report:readme -->``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from training.curves import Curve, plot, smoothed, step_label
from training.metrics import read_records

ROOT = Path(__file__).resolve().parent.parent  # the repository: docs/ beside this package
DATA = ROOT / "docs" / "results"
DOC = ROOT / "docs" / "results.md"
README = ROOT / "README.md"
README_BLOCK = "readme"


class ReportError(Exception):
    """A section whose data is missing or malformed, or a doc without the section's markers."""


@dataclass(frozen=True)
class Run:
    """One committed run: ``steps``, ``success``, ``wall_s`` ``[n]`` per evaluation, and its seed."""

    name: str
    seed: int | None
    env_id: str
    steps: np.ndarray
    success: np.ndarray
    wall_s: np.ndarray
    variant: str = ""
    cpu: str = ""  # where a section's runs ran on different CPUs: this run's


def short(value: object) -> str:
    """A config value in a table cell: mappings as ``k=v`` pairs without Hydra's ``_target_``-like keys."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={short(v)}" for k, v in value.items() if not str(k).startswith("_")) + "}"
    return str(value)


def load_run(run_dir: Path, label_keys: Sequence[str] = (), label_defaults: Mapping[str, object] | None = None) -> Run:
    config = run_dir / "config.yaml"
    if not config.is_file() or not (run_dir / "metrics.jsonl").is_file():
        raise ReportError(f"{run_dir}: expected metrics.jsonl and config.yaml")
    cfg = OmegaConf.load(config)
    records = [r for r in read_records(run_dir / "metrics.jsonl") if r.get("eval_success_rate") is not None]
    if not records:
        raise ReportError(f"{run_dir}/metrics.jsonl: no evaluated epoch")
    parts = []
    for key in label_keys:
        value = OmegaConf.select(cfg, key, default=(label_defaults or {}).get(key, ReportError))
        if value is ReportError:
            raise ReportError(f"{config}: no key {key!r} (label_keys)")
        value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        parts.append(f"{key.rsplit('.', 1)[-1]}={short(value)}")
    return Run(
        run_dir.name,
        cfg.get("seed"),
        str(cfg.env.id),
        np.array([r["env_steps"] for r in records], dtype=np.int64),
        np.array([r["eval_success_rate"] for r in records], dtype=np.float64),
        np.array([r["wall_s"] for r in records], dtype=np.float64),
        ", ".join(parts),
    )


def trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
    """``[n] -> [n]``: the mean of each value and the ``window - 1`` before it (fewer at the start)."""
    sums = np.cumsum(np.concatenate([[0.0], values]))
    idx = np.arange(1, len(values) + 1)
    return (sums[idx] - sums[np.maximum(idx - window, 0)]) / np.minimum(idx, window)


def at_steps(run: Run, values: np.ndarray, step: int) -> float | None:
    """``values`` at the last evaluation at or before ``step`` env steps; ``None`` if the run ended before it
    (it must have reached ``step``, give or take one epoch)."""
    if run.steps[-1] < step:
        return None
    return float(values[np.searchsorted(run.steps, step, side="right") - 1])


def first_reaching(run: Run, values: np.ndarray, threshold: float) -> tuple[int, float] | None:
    """``(env steps, wall s)`` of the first evaluation whose ``values`` is at least ``threshold``."""
    hits = np.flatnonzero(values >= threshold)
    return (int(run.steps[hits[0]]), float(run.wall_s[hits[0]])) if len(hits) else None


def duration(seconds: float) -> str:
    """``23.4 -> '23.4 s'``, ``1500 -> '25.0 min'``."""
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def table(runs: Sequence[Run], milestones: Sequence[int], threshold: float, window: int) -> str:
    """The markdown table of a section (see the module docstring); a ``CPU`` column where runs name their CPU."""
    cpu_column = any(run.cpu for run in runs)
    head = ["run", *[step_label(m) for m in milestones], "end", f"first >= {threshold:g}", "at wall", "wall"]
    head += ["CPU"] if cpu_column else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    variants = list(dict.fromkeys(run.variant for run in runs))
    for variant in variants:
        group = [run for run in runs if run.variant == variant]
        cols: list[list[float]] = [[] for _ in range(len(milestones) + 1)]
        for run in group:
            mean = trailing_mean(run.success, window)
            name = f"seed {run.seed}" if run.seed is not None else run.name
            cells = [f"{variant}, {name}" if variant else name]
            for i, m in enumerate(milestones):
                value = at_steps(run, mean, m)
                cells.append("-" if value is None else f"{value:.2f}")
                if value is not None:
                    cols[i].append(value)
            cells.append(f"{mean[-1]:.2f} at {step_label(int(run.steps[-1]))}")
            cols[-1].append(float(mean[-1]))
            hit = first_reaching(run, mean, threshold)
            cells += [step_label(hit[0]), duration(hit[1])] if hit else ["not yet", "-"]
            cells.append(duration(float(run.wall_s[-1])))
            cells += [run.cpu] if cpu_column else []
            lines.append("| " + " | ".join(cells) + " |")
        if len(group) > 1:
            means = [f"{np.mean(c):.2f}" if len(c) == len(group) else "-" for c in cols]
            label = f"mean of {len(group)}" + (f", {variant}" if variant else "")
            lines.append("| " + " | ".join([label, *means, "", "", "", *([""] if cpu_column else [])]) + " |")
    return "\n".join(lines)


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
    block = table(runs, section.milestones, section.threshold, section.window)
    what = "each evaluation on its own" if section.window == 1 else f"the mean of the last {section.window} evaluations"
    block += (
        f"\n\nEval success rate: {what} at each point; wall: training time (collection, updates, "
        f"evaluation) on {section.where()}. Data: "
        + ", ".join(f"[`{d.relative_to(data.parent.parent).as_posix()}`]({d.relative_to(data.parent).as_posix()})"
                    for d in run_dirs)  # fmt: skip
        + "."
    )
    if section.curve:
        block += f"\n\n![{runs[0].env_id}: eval success rate against env steps]({section.curve})"
    return block, runs


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
            curves = [Curve(data / r.name, r.env_id, r.seed, r.steps, r.success, r.variant) for r in runs]
            plot([smoothed(c, section.smooth) for c in curves], "eval_success_rate", doc_path.parent / section.curve,
                 f"eval success rate, mean of last {section.smooth} evals" if section.smooth > 1 else None)  # fmt: skip
    return current, doc


@dataclass(frozen=True)
class Headline:
    """One figure of README.md: a section's runs at ``at`` env steps (``None``: at the end of each run)."""

    section: str
    title: str
    command: str
    at: int | None


def load_headlines(spec: Path, sections: Sequence[Section]) -> list[Headline]:
    """The ``readme`` entries of ``report.yaml`` (none if it has no ``readme`` key)."""
    raw = OmegaConf.to_container(OmegaConf.load(spec), resolve=True)
    assert isinstance(raw, dict)
    entries = raw.get("readme", [])
    if not isinstance(entries, list):
        raise ReportError(f"{spec}: expected 'readme: [{{section: NAME, title: ..., command: ..., at: ...}}, ...]'")
    names = {s.name for s in sections}
    headlines = []
    for i, e in enumerate(entries):
        try:
            at = e.get("at")
            headline = Headline(str(e["section"]), str(e["title"]), str(e["command"]), None if at is None else int(at))
        except (AttributeError, KeyError, TypeError, ValueError) as err:
            raise ReportError(f"{spec}: readme entry {i} is malformed ({err})") from None
        if headline.section not in names:
            raise ReportError(f"{spec}: readme entry {i} names no section: {headline.section!r}")
        headlines.append(headline)
    return headlines


def span(lo: str, hi: str) -> str:
    return lo if lo == hi else f"{lo}-{hi}"


def duration_span(seconds: Sequence[float]) -> str:
    """``[3.3, 4.7] -> '3.3-4.7 s'``, ``[1700, 1750] -> '28.3-29.2 min'`` (the unit of :func:`duration`)."""
    lo, hi = duration(min(seconds)), duration(max(seconds))
    if lo.split()[1] == hi.split()[1]:
        return f"{span(lo.split()[0], hi.split()[0])} {lo.split()[1]}"
    return f"{lo}-{hi}"


def seed_list(runs: Sequence[Run]) -> str:
    """``'seeds 0, 1 and 2'``, ``'seeds 0-4'`` (four or more in a row), ``'seed 3'``."""
    seeds = [r.seed if r.seed is not None else r.name for r in runs]
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    first = seeds[0]
    if len(seeds) >= 4 and isinstance(first, int) and seeds == list(range(first, first + len(seeds))):
        return f"seeds {first}-{seeds[-1]}"
    return "seeds " + ", ".join(map(str, seeds[:-1])) + f" and {seeds[-1]}"


def anchor(doc: str, env_id: str, doc_name: str) -> str:
    """The GitHub anchor of the ``## <env_id>`` heading of ``doc``."""
    if not re.search(rf"^## {re.escape(env_id)}$", doc, re.M):
        raise ReportError(f"{doc_name}: no '## {env_id}' heading to link to")
    return re.sub(r"[^\w\- ]", "", env_id.lower()).replace(" ", "-")


def headline_line(headline: Headline, section: Section, runs: Sequence[Run], link: str) -> str:
    """README.md's bullet for ``headline`` (see the module docstring), linking to ``link``."""
    means = [trailing_mean(run.success, section.window) for run in runs]
    if headline.at is None:
        values = [float(m[-1]) for m in means]
        ends = [int(run.steps[-1]) for run in runs]
        where = f"at the end of the run ({span(step_label(min(ends)), step_label(max(ends)))} env steps)"
        walls = [float(run.wall_s[-1]) for run in runs]
        budget = f"the whole run takes {duration_span(walls)} of training"
    else:
        found = [at_steps(run, m, headline.at) for run, m in zip(runs, means, strict=True)]
        if any(v is None for v in found):
            raise ReportError(f"readme: a run of section {section.name!r} ends before {headline.at} env steps")
        values = [float(v) for v in found if v is not None]
        where = f"at {step_label(headline.at)} env steps"
        walls = [float(at_steps(run, run.wall_s, headline.at)) for run in runs]  # type: ignore[arg-type]
        budget = f"{step_label(headline.at)} env steps take {duration_span(walls)} of training per seed"
    budget += f" on {section.where()}"
    window = f"the mean of its last {section.window} evaluations" if section.window > 1 else ""
    if f"{min(values):.2f}" == f"{max(values):.2f}":
        every = " for every seed" if len(runs) > 1 else ""
        success = f"eval success {values[0]:.2f} {where}{every}" + (f" ({window})" if window else "")
    else:
        each = f", each {window}" if window else ""
        success = (f"eval success {np.mean(values):.2f} {where}, the mean of {len(runs)} seeds "
                   f"({min(values):.2f}-{max(values):.2f} per seed{each})")  # fmt: skip
    hits = [h for run, m in zip(runs, means, strict=True) if (h := first_reaching(run, m, section.threshold))]
    reached = f"first >= {section.threshold:g}"
    if hits:
        steps = span(step_label(min(h[0] for h in hits)), step_label(max(h[0] for h in hits)))
        reached += f" after {steps} env steps and {duration_span([h[1] for h in hits])} of training"
        if len(hits) < len(runs):
            reached += f" ({len(hits)} of {len(runs)} seeds)"
    else:
        reached = f"no seed at {section.threshold:g} yet"
    return (f"- **{headline.title}**: `{headline.command}` ({seed_list(runs)}): {success}; {reached}; "
            f"{budget} ([results]({link})).")  # fmt: skip


def readme_block(headlines: Sequence[Headline], sections: Sequence[Section], data: Path, results: str,
                 results_link: str) -> str:  # fmt: skip
    """README.md's generated block: one bullet per headline; ``results`` is the text of docs/results.md and
    ``results_link`` its path relative to README.md."""
    by_name = {s.name: s for s in sections}
    lines = []
    for headline in headlines:
        section = by_name[headline.section]
        runs = [load_run_of(section, data, r) for r in section.runs]
        link = f"{results_link}#{anchor(results, runs[0].env_id, results_link)}"
        lines.append(headline_line(headline, section, runs, link))
    return "\n".join(lines)


def build_readme(readme_path: Path, doc_path: Path, data: Path) -> tuple[str, str] | None:
    """``(current README, regenerated README)``, or ``None`` where ``report.yaml`` lists no ``readme`` figures."""
    sections = load_sections(data / "report.yaml")
    headlines = load_headlines(data / "report.yaml", sections)
    if not headlines:
        return None
    current = readme_path.read_text()
    link = Path(os.path.relpath(doc_path, readme_path.parent)).as_posix()
    block = readme_block(headlines, sections, data, doc_path.read_text(), link)
    return current, replace_block(current, README_BLOCK, block, readme_path.name)
