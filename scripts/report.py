"""Build the measured tables and curves of docs/results.md from the committed run data in docs/results/.

    python scripts/report.py            # rewrite the generated blocks of docs/results.md and their curves
    python scripts/report.py --check    # exit 1 if docs/results.md differs from what the data gives

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
the option existed, which ran as its default).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from training.curves import Curve, plot, smoothed, step_label
from training.metrics import read_records

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "docs" / "results"
DOC = ROOT / "docs" / "results.md"


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
    """The markdown table of a section (see the module docstring)."""
    head = ["run", *[step_label(m) for m in milestones], "end", f"first >= {threshold:g}", "at wall", "wall"]
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
            lines.append("| " + " | ".join(cells) + " |")
        if len(group) > 1:
            means = [f"{np.mean(c):.2f}" if len(c) == len(group) else "-" for c in cols]
            label = f"mean of {len(group)}" + (f", {variant}" if variant else "")
            lines.append("| " + " | ".join([label, *means, "", "", ""]) + " |")
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


def label_keys(value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"label_keys must be a list of config keys, got {value!r}")
    return value


def label_defaults(value: object, keys: Sequence[str]) -> dict[str, object]:
    if not isinstance(value, dict) or not set(value) <= set(keys):
        raise ValueError(f"label_defaults must map some of label_keys {list(keys)} to values, got {value!r}")
    return value


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
                )
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ReportError(f"{spec}: section {name!r} is malformed ({err})") from None
    return sections


def section_block(section: Section, data: Path) -> tuple[str, list[Run]]:
    run_dirs = [data / r for r in section.runs]
    runs = [load_run(d, section.label_keys, section.label_defaults) for d in run_dirs]
    block = table(runs, section.milestones, section.threshold, section.window)
    what = "each evaluation on its own" if section.window == 1 else f"the mean of the last {section.window} evaluations"
    block += (
        f"\n\nEval success rate: {what} at each point; wall: training time (collection, updates, "
        "evaluation). Data: "
        + ", ".join(f"[`{d.relative_to(data.parent.parent).as_posix()}`]({d.relative_to(data.parent).as_posix()})"
                    for d in run_dirs)  # fmt: skip
        + "."
    )
    if section.curve:
        block += f"\n\n![{runs[0].env_id}: eval success rate against env steps]({section.curve})"
    return block, runs


def replace_block(doc: str, name: str, block: str) -> str:
    pattern = re.compile(rf"(<!-- report:{re.escape(name)} -->\n)(?:.*?\n)?(<!-- /report:{re.escape(name)} -->)", re.S)
    if not pattern.search(doc):
        raise ReportError(f"{DOC.name}: no '<!-- report:{name} -->' ... '<!-- /report:{name} -->' block")
    return pattern.sub(lambda m: m.group(1) + block + "\n" + m.group(2), doc)


def build(doc_path: Path, data: Path, draw: bool) -> tuple[str, str]:
    """``(current doc, regenerated doc)``; with ``draw``, also writes each section's curve."""
    current = doc_path.read_text()
    doc = current
    for section in load_sections(data / "report.yaml"):
        block, runs = section_block(section, data)
        doc = replace_block(doc, section.name, block)
        if draw and section.curve:
            curves = [Curve(data / r.name, r.env_id, r.seed, r.steps, r.success) for r in runs]
            plot([smoothed(c, section.smooth) for c in curves], "eval_success_rate", doc_path.parent / section.curve,
                 f"eval success rate, mean of last {section.smooth} evals" if section.smooth > 1 else None)  # fmt: skip
    return current, doc


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/results.md is not up to date")
    parser.add_argument("--doc", type=Path, default=DOC, help="the doc to fill (default: %(default)s)")
    parser.add_argument("--data", type=Path, default=DATA, help="the run data and report.yaml (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        current, doc = build(args.doc, args.data, draw=not args.check)
    except ReportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.check:
        if current != doc:
            print(f"{args.doc} is out of date: run python scripts/report.py", file=sys.stderr)
            return 1
        print(f"{args.doc} matches the data")
        return 0
    args.doc.write_text(doc)
    print(f"wrote {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
