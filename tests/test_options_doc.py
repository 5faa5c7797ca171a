"""docs/options.md lists every config option with its default: each leaf key of the composed default config and
of each option file of each group (``configs/<group>/<option>.yaml``, as Hydra composes it) appears there with
its value, and every key the page names exists.

How the page is read. In a table whose rows start with a key (`` `runner.epochs` ``), the value columns are those
headed ``default`` (the value when no group option is chosen) or `` `group=option` `` (e.g. `` `agent=td3` ``);
a cell holds the value as a code span (`` `0.98` ``, `` `null` ``, `` `[256, 256, 256]` ``). In a table whose
rows start with a group option (`` `experiment=fetch_push` ``), each `` `key=value` `` code span in the row is
a value of that option. A value written for ``default`` holds for every option of the group that does not list
its own. Tables under a ``##`` heading that names ``evaluate.py`` are the options of ``scripts/evaluate.py``
(``configs/evaluate.yaml``); all others are ``scripts/train.py``'s. Values that are interpolations
(``${...}``) are described in words, so only their keys are checked.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import CONFIG_DIR, ROOT
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import training.cli  # noqa: F401  (registers the if_resume resolver of configs/hydra/default.yaml)

DOC = ROOT / "docs" / "options.md"
CONFIGS = Path(CONFIG_DIR)
TRAIN, EVALUATE = "train", "evaluate"
GROUPS = ("runner", "agent", "buffer", "logger", "distributed", "checkpoint", "env", "hydra")  # train.yaml's
CODE = re.compile(r"`([^`]+)`")
LABEL = re.compile(r"^([\w/]+)=([\w.-]+)$")  # group=option
KEY = re.compile(r"^\+?((?:seed|device|torch_threads|progress|resume|env|agent|buffer|runner|logger"
                 r"|checkpoint|distributed|hydra)(?:\.[\w-]+)*)(?:=|$)")  # fmt: skip


@dataclass(frozen=True)
class Entry:
    """One value the page gives: ``key`` under ``label`` (``default`` or ``group=option``) in ``namespace``."""

    namespace: str
    key: str
    label: str
    values: tuple[str, ...]  # the code spans of its cell (or the one ``value`` of a ``key=value`` span)
    line: int


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def parse(text: str) -> list[Entry]:
    """The page's values (see the module docstring)."""
    entries: list[Entry] = []
    namespace, header = TRAIN, None
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("## "):
            namespace = EVALUATE if "evaluate.py" in line else TRAIN
        if not line.startswith("|"):
            header = None
            continue
        row = cells(line)
        if header is None:
            header = row
            continue
        if set("".join(row)) <= set("-: "):
            continue
        first = CODE.fullmatch(row[0])
        if first is None:
            continue
        if LABEL.match(first.group(1)):  # a group option's row: its key=value spans
            for cell in row[1:]:
                for span in CODE.findall(cell):
                    key, eq, value = span.partition("=")
                    if eq and KEY.match(key):
                        entries.append(Entry(namespace, key, first.group(1), (value,), n))
            continue
        for head, cell in zip(header[1:], row[1:], strict=False):
            label = head.strip("`")
            if head == "default" or (head.startswith("`") and LABEL.match(label)):
                entries.append(Entry(namespace, first.group(1), label, tuple(CODE.findall(cell)), n))
    return entries


def same(written: Any, value: Any) -> bool:
    """Whether a value read from the page (YAML) is the config's value (a bool only equals a bool; an enum is
    written by its name, as in the YAML file)."""
    if isinstance(value, Enum):
        value = value.name
    if isinstance(written, bool) or isinstance(value, bool):
        return isinstance(written, bool) and isinstance(value, bool) and written == value
    if isinstance(written, int | float) and isinstance(value, int | float):
        return float(written) == float(value)
    if isinstance(written, list) and isinstance(value, list):
        return len(written) == len(value) and all(same(a, b) for a, b in zip(written, value, strict=True))
    if isinstance(written, dict) and isinstance(value, dict):
        return written.keys() == value.keys() and all(same(written[k], value[k]) for k in value)
    return written == value


def read(span: str) -> Any:
    try:
        return yaml.safe_load(span)
    except yaml.YAMLError:
        return span


def leaves(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted key, value)`` of every leaf of a plain container; an empty mapping is a leaf."""
    if isinstance(node, dict) and node:
        for k, v in node.items():
            yield from leaves(v, f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix, node


def paths(node: Any, prefix: str = "") -> Iterator[str]:
    """Every dotted key of a plain container, inner nodes included."""
    if isinstance(node, dict):
        for k, v in node.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            yield key
            yield from paths(v, key)


def composed(*overrides: str, config: str = TRAIN) -> dict:
    """The config as Hydra composes it, with Hydra's own node, interpolations left as written."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name=config, overrides=list(overrides), return_hydra_config=True)
    return OmegaConf.to_container(cfg, resolve=False)


def lookup(tree: dict, key: str) -> Any:
    """The value at a dotted key whose last parts may hold dots themselves (``params.agent.lr_actor``)."""
    for k, v in leaves(tree):
        if k == key:
            return v
    raise KeyError(key)


def default_choices() -> dict[str, str]:
    choices = {}
    for item in yaml.safe_load((CONFIGS / "train.yaml").read_text())["defaults"]:
        if isinstance(item, dict):
            (group, option), = item.items()  # fmt: skip
            if group in GROUPS and option is not None:
                choices[group] = str(option)
    return choices


@dataclass(frozen=True)
class OptionFile:
    """A group option file and how to see it: the overrides that compose it (without the per-env tuning, which
    would hide the values of agent and runner files), the label the page gives it, its keys' prefix."""

    path: Path
    overrides: tuple[str, ...]
    label: str
    prefix: str

    @property
    def id(self) -> str:
        return self.path.relative_to(CONFIGS).as_posix()

    def keys(self) -> list[str]:
        raw = yaml.safe_load(self.path.read_text()) or {}
        raw.pop("defaults", None)
        keys = [f"{self.prefix}.{k}" if self.prefix else k for k, _ in leaves(raw)]
        return [k for k in keys if not k.endswith("._partial_")]  # how Hydra builds the group, not an option


def package(path: Path, group: str) -> str:
    """The key prefix of a group file: its ``# @package`` header, else the group's path."""
    match = re.search(r"^# @package (\S+)", path.read_text(), re.M)
    name = match.group(1) if match else group.replace("/", ".")
    return "" if name == "_global_" else name


def option_files() -> list[OptionFile]:
    files = []
    for path in sorted(CONFIGS.rglob("*.yaml")):
        group = path.parent.relative_to(CONFIGS).as_posix()
        if group == ".":
            continue
        option = path.stem
        if group == "tuning":  # composed by env=<option>
            files.append(OptionFile(path, (f"env={option}",), f"env={option}", package(path, group)))
            continue
        no_tuning = ("~tuning",) if group in GROUPS else ()
        overrides = (*parent_options(group), f"{group}={option}", *no_tuning)
        files.append(OptionFile(path, overrides, f"{group}={option}", package(path, group)))
    return files


def parent_options(group: str) -> tuple[str, ...]:
    """The option that brings a nested group into the config (``hydra/sweeper=her_optuna`` for
    ``hydra/sweeper/pruner``: its defaults list names ``pruner``), and that option's own parents; none for a
    group of ``train.yaml``."""
    parent, _, name = group.rpartition("/")
    if not parent:
        return ()
    for path in sorted((CONFIGS / parent).glob("*.yaml")):
        defaults = (yaml.safe_load(path.read_text()) or {}).get("defaults", [])
        if any(isinstance(item, dict) and name in item for item in defaults):
            return (*parent_options(parent), f"{parent}={path.stem}")
    return ()


ENTRIES = parse(DOC.read_text()) if DOC.is_file() else []
CHOICES = default_choices()


def matches(entries: list[Entry], value: Any) -> bool:
    return any(same(read(span), value) for entry in entries for span in entry.values)


def shown(namespace: str, key: str, labels: set[str], value: Any) -> str | None:
    """``None`` if the page gives ``value`` for ``key`` under one of ``labels`` (or, where none of them lists
    the key, under ``default``), else what is wrong."""
    entries = [e for e in ENTRIES if e.namespace == namespace and e.key == key]
    if not entries:
        return f"{key} is not in docs/options.md"
    if isinstance(value, str) and "${" in value:
        return None
    own = [e for e in entries if e.label in labels] or [e for e in entries if e.label == "default"]
    if not matches(own, value):
        found = {e.label: e.values for e in entries}
        return f"{key}: {value!r} expected under {sorted(labels)} or default, the page has {found}"
    return None


def test_the_page_gives_values():
    assert len(ENTRIES) > 50, "docs/options.md: no option tables found"


def test_every_key_of_the_default_config_is_shown_with_its_value():
    cfg = composed()
    cfg.pop("hydra")
    labels = {"default", *(f"{g}={o}" for g, o in CHOICES.items())}
    problems = [
        p for key, value in leaves(cfg) if not key.endswith("._partial_") and (p := shown(TRAIN, key, labels, value))
    ]
    assert problems == []


@pytest.mark.parametrize("option", option_files(), ids=lambda f: f.id)
def test_every_key_of_each_option_file_is_shown_with_its_value(option):
    cfg = composed(*option.overrides)
    group, _, name = option.label.partition("=")
    default = CHOICES.get(group) == name and option.path.parent.name != "tuning"
    labels = {option.label, *(["default"] if default else [])}
    problems = [p for key in option.keys() if (p := shown(TRAIN, key, labels, lookup(cfg, key)))]
    assert problems == []


def test_every_option_of_evaluate_is_shown_with_its_value():
    cfg = composed(config=EVALUATE)
    raw = yaml.safe_load((CONFIGS / "evaluate.yaml").read_text())
    raw.pop("defaults", None)
    problems = [p for key, _ in leaves(raw) if (p := shown(EVALUATE, key, {"default"}, lookup(cfg, key)))]
    assert problems == []


def known_keys() -> dict[str, set[str]]:
    """Every key that some composition of the configs has, per namespace."""
    train: set[str] = set()
    for overrides in [(), *(f.overrides for f in option_files()), ("hydra/launcher=joblib",)]:
        train |= set(paths(composed(*overrides)))
    return {TRAIN: train, EVALUATE: set(paths(composed(config=EVALUATE)))}


def named_keys(text: str) -> Iterator[tuple[str, str, int]]:
    """``(namespace, key, line)`` of each key the page names: table entries and code spans in the text that start
    with an option's name (a ``+key=...`` span adds a key and is left out)."""
    for entry in parse(text):
        yield entry.namespace, entry.key, entry.line
    namespace = TRAIN
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("## "):
            namespace = EVALUATE if "evaluate.py" in line else TRAIN
        for span in CODE.findall(line):
            match = KEY.match(span)
            if match and not span.startswith("+"):
                yield namespace, match.group(1), n


def test_the_page_names_no_key_that_does_not_exist():
    known = known_keys()
    unknown = sorted({f"line {n}: {key} ({ns})" for ns, key, n in named_keys(DOC.read_text()) if key not in known[ns]})
    assert unknown == []
