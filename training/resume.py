"""Resuming a run: the options a resumed run may change, its saved config, the checks of a ``resume=`` argument
made before Hydra writes anything, the run dir it must write into, and loading its checkpoint."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from training import checkpoint, rundir
from training.checkpoint import Checkpointer
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
    if not resumes or resumes[-1] == "resume=null":
        return
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
