"""Resuming a run: the options a resumed run may change, its saved config, the checks of a ``resume=`` argument
made before Hydra writes anything, the run dir it must write into, and loading its checkpoint.

``resume=auto`` continues whatever the run's own dir holds (``continuation``): nothing (a new run starts), a
stopped run (resumed from its checkpoint) or a finished one (kept as it is), so that a command, a sweep job
among them, can be started again with the same arguments after any stop."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from omegaconf import DictConfig, OmegaConf

from training import checkpoint, rundir
from training.checkpoint import Checkpointer, CheckpointError
from training.metrics import read_records
from training.options import ConfigError
from training.rundir import RunDirError
from training.runner import Runner

# What a resumed run may change; everything else comes from the config saved in its checkpoint.
RESUME_OVERRIDES = (
    "runner.epochs",
    "progress",
    "torch_threads",
    "device",
    "checkpoint.every",
    "checkpoint.save_buffer",
)

AUTO = "auto"
"""``resume=auto``: continue the run this run's dir holds, if any (``continuation``)."""


def checkpoint_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / checkpoint.CHECKPOINT_DIR / checkpoint.LAST


def resume_config(run_dir: str | Path, overrides: Sequence[str] = ()) -> DictConfig:
    """The config saved in ``run_dir``'s last checkpoint, with ``resume=run_dir`` and ``overrides``
    (``key=value``, keys from ``RESUME_OVERRIDES`` only)."""
    if not Path(run_dir).is_dir():
        raise ConfigError(f"resume={run_dir}: no such run dir")
    saved = checkpoint.load_resumable(run_dir).content
    for override in overrides:
        key = override.split("=", 1)[0]
        if key not in RESUME_OVERRIDES:
            raise ConfigError(
                f"{override}: a resumed run keeps its saved config; only {', '.join(RESUME_OVERRIDES)} may change"
            )
    cfg = OmegaConf.create(saved["config"])
    cfg.merge_with_dotlist(list(overrides))
    cfg.resume = str(run_dir)
    return cfg


def own_run_dir(run_dir: str | Path, resume: str | None) -> AbstractContextManager[None]:
    """Hold ``run_dir`` for this process (``rundir.hold``) on rank 0; ranks > 0 write no run dir. A resume must
    write into the dir it continues."""
    if int(os.environ.get("RANK", "0")) != 0:
        return nullcontext()
    if resume == AUTO:
        return rundir.hold(run_dir, new_run=False)  # what it holds is looked at once it is held (continuation)
    if resume is not None and Path(resume).resolve() != Path(run_dir).resolve():
        raise ConfigError(f"resume={resume}: {resume_elsewhere(resume, run_dir)}")
    return rundir.hold(run_dir, new_run=resume is None)


def resume_elsewhere(resume: str | Path, run_dir: str | Path) -> str:
    return (
        f"a resume continues the run in {resume} and writes there, but the run dir is {run_dir}: that would split "
        "the run in two. Leave hydra.run.dir out when resuming (to branch off: copy the run dir, resume the copy)"
    )


def start_or_resume(runner: Runner, checkpointer: Checkpointer | None, path: Path | None, saved: dict | None) -> None:
    """Load the checkpoint ``saved`` (read from ``path``) into ``runner``, or, for a new run, write its
    first checkpoint so that it can be resumed from its first cycle on. ``checkpointer`` is ``None`` on
    ranks > 0, which load the same checkpoint but write none."""
    if path is None or saved is None:
        if checkpointer is not None:
            checkpointer.save_last(runner)
        return
    best = checkpoint.restore(path, saved, runner)
    if checkpointer is not None:
        checkpointer.best_success = best
    if saved["training"]["buffer"] is None:
        print(f"note: {path} holds no replay buffer (checkpoint.save_buffer=false): it starts empty", file=sys.stderr)


def check_resume_argument(argv: Sequence[str]) -> None:
    """Exit with an error (status 2) if ``resume=`` is given but cannot resume, before Hydra makes or writes
    anything: an empty value, a dir with no checkpoint, one that a live process writes, options a resumed run
    cannot change, or ``hydra.run.dir`` elsewhere."""
    resumes = [arg for arg in argv if arg.startswith("resume=")]
    if not resumes or resumes[-1] in ("resume=null", f"resume={AUTO}"):
        return  # (resume=auto: each run looks at its own dir once it holds it, continuation)
    arg = resumes[-1]
    problem = resume_problem(arg.split("=", 1)[1], [a for a in argv if not a.startswith("resume=")])
    if problem is not None:
        print(f"error: {arg}: {problem}", file=sys.stderr)
        sys.exit(2)


def resume_problem(value: str, others: Sequence[str]) -> str | None:
    """Why ``resume=<value>`` with the other command-line arguments ``others`` cannot resume (``None``: it may)."""
    if not value:
        return "resume needs the run dir to continue, e.g. resume=runs/<env>/<time> (resume=null: a new run)"
    run_dir = Path(value)
    if not run_dir.is_dir():
        return "no such run dir"
    if not checkpoint.has_resumable(run_dir):
        return f"no checkpoint {checkpoint_path(run_dir)} (the run ended before its first one)"
    for arg in others:
        key, has_value, option = arg.lstrip("+~").partition("=")
        if key == "hydra.run.dir" and Path(option).resolve() != run_dir.resolve():
            return resume_elsewhere(value, option)
        if arg.startswith("-") or not has_value or key.startswith(("hydra.", "hydra/")):
            continue  # flags, and Hydra's own settings (launcher, logging)
        if key not in RESUME_OVERRIDES:
            return f"{arg}: a resumed run keeps its saved config; only {', '.join(RESUME_OVERRIDES)} may change"
    if int(os.environ.get("RANK", "0")) == 0:  # (ranks > 0 write nothing there; rank 0 may hold the dir already)
        try:
            rundir.check_not_busy(run_dir)
        except RunDirError as err:
            return str(err)
    return None


# --- resume=auto -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Continuation:
    """What ``resume=auto`` does in a run dir (``continuation``).

    Args:
        action: ``"start"`` (the dir holds no run), ``"resume"`` (a stopped run) or ``"keep"`` (a finished run:
            nothing is trained or written).
        cfg: the config to train with: a new run's (``resume`` null) or the resumed run's own (``resume_config``);
            for ``"keep"``, the config given.
        final: ``"keep"``: the finished run's last metrics record (its last line of ``metrics.jsonl``).
        epochs_done: the epochs the run in the dir has done (``"resume"``: those its checkpoint holds).
    """

    action: Literal["start", "resume", "keep"]
    cfg: DictConfig
    final: dict[str, Any] | None = None
    epochs_done: int = 0


def continuation(cfg: DictConfig, run_dir: str | Path) -> Continuation:
    """What ``cfg`` with ``resume=auto`` does in ``run_dir``, which this process holds: start a new run when the
    dir holds none; keep the run there when it has finished ``cfg.runner.epochs`` epochs; else resume it from its
    checkpoint. A run there whose config differs from ``cfg`` in more than ``RESUME_OVERRIDES`` is refused
    (``ConfigError`` naming each difference): it is never continued with other options."""
    if not rundir.run_files(run_dir):
        new = cfg.copy()
        new.resume = None
        return Continuation("start", new)
    final = finished_record(cfg, run_dir)
    if final is not None:
        return Continuation("keep", cfg, final, int(cfg.runner.epochs))
    if not checkpoint.has_resumable(run_dir):
        raise ConfigError(
            f"resume={AUTO}: {run_dir} holds a run ({', '.join(rundir.run_files(run_dir))}) but no checkpoint "
            f"{checkpoint_path(run_dir)} to resume it from: move the dir away to start the run anew"
        )
    saved = checkpoint.load_resumable(run_dir).content  # (a warning about it is printed when training loads it)
    check_same_config(cfg, saved["config"], run_dir)
    resumed = OmegaConf.create(saved["config"])
    for key in RESUME_OVERRIDES:
        OmegaConf.update(resumed, key, OmegaConf.select(cfg, key), merge=False)
    resumed.resume = str(run_dir)
    return Continuation("resume", resumed, epochs_done=int(saved["counters"]["epoch"]))


def finished_record(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any] | None:
    """The last metrics record of the run in ``run_dir`` if it has finished the ``cfg.runner.epochs`` epochs
    ``cfg`` asks for (its ``policy.pt`` written after its last logged epoch), else ``None``. A config that differs
    from the run's in more than ``RESUME_OVERRIDES`` raises ``ConfigError``."""
    policy, metrics = Path(run_dir) / "policy.pt", Path(run_dir) / "metrics.jsonl"
    if not policy.is_file():
        return None
    try:
        saved = checkpoint.load(policy)
    except CheckpointError as err:  # a resume from last.pt writes it again
        print(f"warning: {err}: resuming the run to write it again", file=sys.stderr)
        return None
    check_same_config(cfg, saved["config"], run_dir)
    records = read_records(metrics) if metrics.is_file() else []
    last = records[-1] if records else {}
    logged_last = all(last.get(k, _ABSENT) == saved["record"].get(k) for k in ("epoch", "env_steps"))
    if saved["counters"]["epoch"] != cfg.runner.epochs or not logged_last:
        return None  # more epochs asked for (or fewer: refused by the resume), or trained on after policy.pt
    return last


def check_same_config(cfg: DictConfig, saved: Mapping[str, Any], run_dir: str | Path) -> None:
    """Raise ``ConfigError`` when ``cfg`` differs from ``saved`` (the resolved config of the run in ``run_dir``)
    in an option a resumed run may not change."""
    now = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(now, dict)
    differences = config_differences(saved, now)
    if differences:
        shown = "; ".join(differences[:5]) + (f"; and {len(differences) - 5} more" if len(differences) > 5 else "")
        raise ConfigError(
            f"resume={AUTO}: the run in {run_dir} has another config ({shown}): it continues only with its own "
            f"(only {', '.join(RESUME_OVERRIDES)} may change). Start again with its options, or give the new "
            "config another dir"
        )


# Keys of a run's saved config that are not options given to it: the run it continues and the precision chosen.
_NOT_GIVEN = ("resume", "precision_probe")


def config_differences(saved: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """``"<key>: <saved value> in the run, <value> now"`` for each leaf key (dotted) where two resolved configs
    differ, leaving out ``RESUME_OVERRIDES`` and the keys a run records about itself (``resume``,
    ``precision_probe``)."""
    old, new = dict(_leaves(saved)), dict(_leaves(now))
    ignored = (*_NOT_GIVEN, *RESUME_OVERRIDES)
    keys = [k for k in sorted(set(old) | set(new)) if not any(k == i or k.startswith(f"{i}.") for i in ignored)]
    return [
        f"{key}: {_shown(old, key)} in the run, {_shown(new, key)} now"
        for key in keys
        if old.get(key, _ABSENT) != new.get(key, _ABSENT)
    ]


_ABSENT = object()


def _shown(values: Mapping[str, Any], key: str) -> str:
    value = values.get(key, _ABSENT)
    return "absent" if value is _ABSENT else json.dumps(value, default=str)


def _leaves(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted key, value)`` of every leaf of a plain config; an empty mapping is a leaf."""
    if isinstance(node, Mapping) and node:
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, node
