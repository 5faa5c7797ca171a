"""README.md's figures ("Why pick it"), each from one section of docs/results/report.yaml: its ``readme`` entries,
one bullet each, in README.md between ``<!-- report:readme -->`` and ``<!-- /report:readme -->``.

A bullet gives the command, the eval success rate (the window means of the section's table) at ``at`` env steps
(``null``: at the end of each run), the env steps, TFLOP of updates and training time at which the runs first
reached the section's threshold, and the training time to ``at``, with the section's CPU, linked to the
section's ``## <env id>`` heading in docs/results.md. From ``MIN_SEEDS`` seeds on each number is the IQM over the
seeds with its 95% bootstrap interval ("IQM [95% CI] over N seeds"); below that, the range over the seeds.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from training.curves import step_label
from training.report import Section, load_run_of, load_sections, replace_block
from training.report_tables import steps_text, wall_estimate
from training.run_results import ReportError, Run, at_steps, duration, reaching, tflop_text, trailing_mean
from training.statistics import MIN_SEEDS, estimate

README_BLOCK = "readme"


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


def values_at(headline: Headline, section: Section, runs: Sequence[Run]) -> tuple[list[float], str, str]:
    """Each run's success (window mean) where ``headline`` reads it, the words for where, and for the
    training time to there."""
    means = [trailing_mean(run.success, section.window) for run in runs]
    if headline.at is None:
        ends = [int(run.steps[-1]) for run in runs]
        where = f"at the end of the run ({span(step_label(min(ends)), step_label(max(ends)))} env steps)"
        walls = [float(run.wall_s[-1]) for run in runs]
        return [float(m[-1]) for m in means], where, f"the whole run takes {duration_span(walls)} of training"
    found = [at_steps(run, m, headline.at) for run, m in zip(runs, means, strict=True)]
    walls = [at_steps(run, run.wall_s, headline.at) for run in runs]
    if any(v is None for v in found) or any(w is None for w in walls):
        raise ReportError(f"readme: a run of section {section.name!r} ends before {headline.at} env steps")
    budget = f"{step_label(headline.at)} env steps take {duration_span([float(w) for w in walls if w is not None])}"
    return [float(v) for v in found if v is not None], f"at {step_label(headline.at)} env steps", \
        budget + " of training per seed"  # fmt: skip


def success_text(values: Sequence[float], where: str, window: int) -> str:
    """``'eval success 0.94 [0.91, 0.96] at 300k env steps, IQM [95% CI] over 5 seeds (0.89-0.97 per seed,
    ...)'``; below ``MIN_SEEDS`` seeds their mean and range; one value where all seeds give it."""
    n = len(values)
    lo, hi = f"{min(values):.2f}", f"{max(values):.2f}"
    each = f"the mean of its last {window} evaluations" if window > 1 else ""
    seeds = (f"{lo} for every seed" if lo == hi else f"{lo}-{hi} per seed") + (f", each {each}" if each else "")
    if n >= MIN_SEEDS:
        value = estimate(values, "IQM").text(lambda v: f"{v:.2f}")
        return f"eval success {value} {where}, IQM [95% CI] over {n} seeds ({seeds})"
    if lo == hi:
        every = " for every seed" if n > 1 else ""
        return f"eval success {lo} {where}{every}" + (f" ({each})" if each else "")
    return f"eval success {np.mean(values):.2f} {where}, the mean of {n} seeds ({seeds})"


def reached_text(section: Section, runs: Sequence[Run]) -> str:
    """``'first >= 0.9 after 255k [240k, 280k] env steps, 265 [250, 290] TFLOP of updates and 24.6 [22.3, 26.9] min
    of training (IQM [95% CI])'``; below ``MIN_SEEDS`` seeds the range over the seeds that reached it. Runs on
    different CPUs (a ``cpu`` mapping) get no training time: their wall times do not add up to one figure."""
    hits = [reaching(run, trailing_mean(run.success, section.window), section.threshold) for run in runs]
    reached = [h for h in hits if h.reached]
    if not reached:
        return f"no seed at {section.threshold:g} yet"
    text = f"first >= {section.threshold:g} after "
    if len(runs) >= MIN_SEEDS:
        bound = len(reached) < len(hits)
        steps = estimate([h.steps for h in hits], "IQM", bound).text(steps_text)
        tflop = estimate([h.tflop for h in hits], "IQM", bound).text(tflop_text)
        if isinstance(section.cpu, str):
            wall = wall_estimate(estimate([h.wall_s for h in hits], "IQM", bound))
            text += f"{steps} env steps, {tflop} TFLOP of updates and {wall} of training (IQM [95% CI]"
        else:
            text += f"{steps} env steps and {tflop} TFLOP of updates (IQM [95% CI]"
        return text + (f"; {len(reached)} of {len(runs)} seeds reached it, the others count at their last "
                       "evaluation)" if bound else ")")  # fmt: skip
    steps = span(step_label(min(h.steps for h in reached)), step_label(max(h.steps for h in reached)))
    tflop = span(tflop_text(min(h.tflop for h in reached)), tflop_text(max(h.tflop for h in reached)))
    if isinstance(section.cpu, str):
        wall = duration_span([h.wall_s for h in reached])
        text += f"{steps} env steps, {tflop} TFLOP of updates and {wall} of training"
    else:
        text += f"{steps} env steps and {tflop} TFLOP of updates"
    return text + (f" ({len(reached)} of {len(runs)} seeds)" if len(reached) < len(runs) else "")


def headline_line(headline: Headline, section: Section, runs: Sequence[Run], link: str) -> str:
    """README.md's bullet for ``headline`` (see the module docstring), linking to ``link``."""
    values, where, budget = values_at(headline, section, runs)
    head = (f"- **{headline.title}**: `{headline.command}` ({seed_list(runs)}): "
            f"{success_text(values, where, section.window)}; {reached_text(section, runs)}")  # fmt: skip
    if isinstance(section.cpu, str):
        return f"{head}; {budget} on {section.cpu} ([results]({link}))."
    return f"{head}; training times on each seed's CPU: [results]({link})."  # runs on different CPUs


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
