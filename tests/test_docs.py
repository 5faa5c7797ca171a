"""The docs say what the code does now: no work history or machine paths in README.md and docs/*.md, every
command they show composes with the project's config (train.py, evaluate.py, benchmark.py) or names options
its script has (plot.py, summarize.py, benchmark.py), every link between them leads to a file and heading that
exist, and their buffer examples run as written."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from conftest import CONFIG_DIR, ROOT, compose_config
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from training.resume import RESUME_OVERRIDES

DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])

HISTORY = re.compile(
    r"\b(first|second|third|fourth|previous|last|this|earlier|later|next) sessions?\b"
    r"|\bsessions since\b|\bused to be\b|\bused to (?:take|run|default|have|need)\b|\bprevious version\b"
    r"|\b(?:earlier|previous|former|old) defaults?\b|\bdefault of the time\b|\bbefore the refactor\b"
    r"|\bnot since\b|\btoday's\b"
    r"|\bseed API\b|\boriginal(?:ly)?\b|\bhow the default was chosen\b|\bthe default was chosen\b"
    r"|\bwe (?:tried|chose|switched|changed|settled|decided)\b|\bturned out\b|\bno longer\b|\bwas renamed\b"
    r"|\bnow (?:uses|defaults|lives)\b|\bbefore (?:the|this) change\b",
    re.IGNORECASE,
)
MACHINE_PATH = re.compile(r"(?<![\w.$])/(?:work|tmp|root|home)/")
SCRIPT = re.compile(r"(?:^|\s)(?:\S*/)?(?:python3?|torchrun)\b[^`\n]*?\bscripts/(\w+)\.py\b")
SWEEPING_GROUPS = ("suite=", "hparams_search=")
PLACEHOLDER = re.compile(r"^[A-Z]$|^\.\.\.$")  # seed=S, agent=A; <...> spans are read as X


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def doc_params() -> list:
    """One param per doc."""
    return [pytest.param(path, id=rel(path)) for path in DOCS]


def offending_lines(path: Path, pattern: re.Pattern) -> list[str]:
    return [f"{rel(path)}:{n}: {line.strip()}" for n, line in enumerate(path.read_text().splitlines(), 1)
            if pattern.search(line)]  # fmt: skip


def commands(text: str) -> list[tuple[str, list[str]]]:
    """``(script, arguments)`` of each ``python scripts/<script>.py ...`` (or ``torchrun ... scripts/...``)
    command in ``text``: in code blocks (one a line; ``\\`` continues it; ``$ `` prompts and ``# ...`` comments
    dropped) and in inline code spans (which may wrap over lines)."""
    found = []
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, re.S | re.M)
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            found.append(line.strip().removeprefix("$ "))
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.S | re.M)
    found += [span.replace("\n", " ") for span in re.findall(r"`([^`]+)`", prose)]
    result = []
    for line in found:
        match = SCRIPT.search(line)
        if match is None:
            continue
        words = shlex.split(re.sub(r"<[^>]*>", "X", line[match.end() :]), comments=True)
        result.append((match.group(1), words))
    return result


def all_commands() -> list:
    params = []
    for path in DOCS:
        for script, words in commands(path.read_text()):
            params.append(pytest.param(script, words, id=f"{rel(path)}: {script} {' '.join(words)}"[:150]))
    return params


def concrete(overrides: list[str], multirun: bool = False) -> list[str]:
    """The overrides a command composes with: ``-m`` dropped and each sweep (``a=x,y``, ``range(...)``) its
    first value; placeholders (``seed=S``, ``policy=<run dir>``) dropped after checking that their key exists
    in the config (by composing it with a value of its own)."""
    out = []
    for override in OverridesParser.create().parse_overrides(overrides):
        text = override.input_line
        if multirun and override.is_sweep_override():
            text = f"{override.get_key_element()}={next(override.sweep_string_iterator())}"
        if PLACEHOLDER.search(str(override.value())) and not override.is_sweep_override():
            continue
        out.append(text)
    return out


def placeholders(overrides: list[str]) -> list[str]:
    return [o.split("=", 1)[0] for o in overrides if "=" in o and PLACEHOLDER.search(o.split("=", 1)[1])]


def has_option(cfg: DictConfig, key: str) -> bool:
    """Whether ``key`` (dotted) is in ``cfg``, as a group or an option, set or still ``???``."""
    parent, _, last = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    return key.startswith("hydra.") or (isinstance(node, DictConfig) and last in node.keys())


def compose_train(overrides: list[str], multirun: bool = False) -> None:
    cfg = compose_config(*concrete(overrides, multirun))
    for key in placeholders(overrides):
        assert has_option(cfg, key), f"train.py has no option {key}"


@pytest.mark.parametrize("path", doc_params())
def test_docs_hold_no_work_history(path):
    assert offending_lines(path, HISTORY) == []


@pytest.mark.parametrize("path", doc_params())
def test_docs_hold_no_machine_paths(path):
    assert offending_lines(path, MACHINE_PATH) == []


def test_the_docs_show_commands():
    scripts = {param.values[0] for param in all_commands()}
    assert {"train", "evaluate", "plot", "summarize", "benchmark"} <= scripts


@pytest.mark.parametrize("script, words", all_commands())
def test_doc_command_composes(script, words):
    flags = [w for w in words if w.startswith("-") and w not in ("-m", "--multirun")]
    source = (ROOT / "scripts" / f"{script}.py").read_text()
    for flag in flags:
        assert f'"{flag.split("=")[0]}"' in source, f"scripts/{script}.py has no option {flag}"
    overrides = [w for w in words if not w.startswith("-") and "=" in w]
    # -m, or a group whose options sweep without it (hydra.mode: MULTIRUN)
    multirun = "-m" in words or "--multirun" in words or any(w.startswith(SWEEPING_GROUPS) for w in words)
    if script == "train":
        resume = [o for o in overrides if o.startswith("resume=") and o != "resume=auto"]
        if resume:  # a resumed run takes its saved config: only a few options may change
            assert all(o.split("=")[0] in RESUME_OVERRIDES for o in overrides if o not in resume), overrides
        else:
            compose_train(overrides, multirun)
    elif script == "benchmark":
        compose_train(overrides)
    elif script == "export":
        from export import OPTIONS  # scripts/export.py

        from agents.export import FORMATS

        assert all(o.split("=")[0] in OPTIONS for o in overrides), overrides
        assert all(o.split("=", 1)[1] in FORMATS for o in overrides if o.startswith("format=")), overrides
    elif script == "evaluate":
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(config_name="evaluate", overrides=concrete(overrides))
        for key in placeholders(overrides):
            assert has_option(cfg, key), f"evaluate.py has no option {key}"


LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(path: Path) -> set[str]:
    """GitHub's anchors of a markdown file's headings (lowercase, punctuation dropped, spaces to hyphens)."""
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    headings = re.findall(r"^#+ (.+)$", text, re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("path", doc_params())
def test_doc_links_lead_to_files_and_headings_that_exist(path):
    broken = []
    for target in LINK.findall(path.read_text()):
        if re.match(r"^[a-z]+://", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            broken.append(f"{target}: no file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}")
        elif anchor and (dest.suffix != ".md" or anchor not in anchors(dest)):
            broken.append(f"{target}: no heading #{anchor} in {rel(dest)}")
    assert broken == []


def buffer_examples() -> list:
    """The python blocks of the docs that use the replay core and need nothing else (no run dir, no env)."""
    params = []
    for path in DOCS:
        for n, block in enumerate(re.findall(r"^```python\n(.*?)^```", path.read_text(), re.S | re.M)):
            if "from her import" in block:
                params.append(pytest.param(block, id=f"{rel(path)}: block {n}"))
    return params


def test_the_docs_show_buffer_examples():
    assert len(buffer_examples()) >= 3


@pytest.mark.parametrize("block", buffer_examples())
def test_doc_buffer_example_runs(block):
    exec(compile(block, "<doc>", "exec"), {"__name__": "doc_example"})
