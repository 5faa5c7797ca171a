"""Training checkpoints: what a resumable (``last.pt``) or policy (``best.pt``, ``policy.pt``) checkpoint
of a run holds, restoring a run from one (falling back to the previous generation ``last.prev.pt`` when the
newest is damaged), and the ``Checkpointer`` hook that writes them during training. Nothing non-finite is
written: a NaN or inf in the agent raises ``DivergenceError`` instead. The file format and atomic writes are
``her.checkpoint_file``'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from her import validation
from her.checkpoint_file import (
    BEST,
    CHECKPOINT_DIR,
    LAST,
    LAST_PREV,
    CheckpointError,
    WriteError,
    brief,
    load,
    load_agent_state,
    mismatches,
    pack_arrays,
    remove_stale_temp_files,
    resolve_path,
    save,
    unpack_arrays,
    write_atomic,
)
from training.divergence import DivergenceError, check_parameters
from training.metrics import read_log, read_records

if TYPE_CHECKING:
    from envs import EnvInfo
    from training.runner import Runner

__all__ = [  # the file-level names are re-exported: one import serves a script
    "BEST",
    "CHECKPOINT_DIR",
    "LAST",
    "LAST_PREV",
    "CheckpointError",
    "Checkpointer",
    "DivergenceError",
    "Resumable",
    "RunInfo",
    "WriteError",
    "check_resumable",
    "content",
    "env_record",
    "has_resumable",
    "load",
    "load_resumable",
    "logged_env_steps",
    "resolve_path",
    "restore",
    "save",
    "write_atomic",
]


@dataclass(frozen=True)
class RunInfo:
    """What a checkpoint records about its run besides the states.

    Args:
        env: ``id``, ``kwargs`` (when any), ``obs_dim``, ``goal_dim``, ``action_dim``, ``action_max``, ``horizon``,
            ``n_actions`` (a ``Discrete`` action space's size; absent for a Box).
        agent_class: import path of the agent class, e.g. ``agents.DDPG``.
        agent_kwargs: its constructor keywords besides the sizes and the device (``hidden``, ``lr_actor``, ...).
        config: the resolved run config, as plain containers.
    """

    env: dict[str, Any]
    agent_class: str
    agent_kwargs: dict[str, Any]
    config: dict[str, Any]


def env_record(env_id: str, info: EnvInfo, kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The env part of a checkpoint: its id, its ``gym.make`` keyword arguments (``kwargs``; left out when
    there are none) and the sizes the networks were built for (``n_actions`` only for a ``Discrete`` action
    space)."""
    return {
        "id": env_id,
        **({"kwargs": dict(kwargs)} if kwargs else {}),
        "obs_dim": info.obs_dim,
        "goal_dim": info.goal_dim,
        "action_dim": info.action_dim,
        "action_max": info.action_max,
        "horizon": info.horizon,
        **({"n_actions": info.n_actions} if info.n_actions is not None else {}),
    }


def _buffer_state(runner: Runner) -> dict[str, Any]:
    state = runner.buffer.state_dict()
    return {**state, "data": pack_arrays(state["data"])}  # type: ignore[arg-type]


# --- content ---------------------------------------------------------------------------------------
def content(
    kind: str, info: RunInfo, runner: Runner, save_buffer: bool = False, best_success: float | None = None
) -> dict[str, Any]:
    """What a ``training`` (resumable) or ``policy`` (agent only) checkpoint of ``runner`` holds."""
    training = None
    if kind == "training":
        training = {
            "runner": runner.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "best_success": best_success,
            "buffer": _buffer_state(runner) if save_buffer else None,
        }
    return {
        "kind": kind,
        "env": dict(info.env),
        "agent_class": info.agent_class,
        "agent_kwargs": dict(info.agent_kwargs),
        "agent": runner.agent.state_dict(),
        "config": info.config,
        "counters": {"epoch": runner.epoch, "env_steps": runner.env_steps, "updates": runner.updates},
        "record": dict(runner.last_record),
        "training": training,
    }


def check_resumable(path: str | Path, saved: Mapping[str, Any], info: RunInfo) -> None:
    """Raise ``CheckpointError`` unless ``saved`` is a training checkpoint whose env and agent are those of
    ``info``; the message lists every difference."""
    _require_training(path, saved)
    problems = mismatches(saved["env"], info.env, "env.")
    if saved["agent_class"] != info.agent_class:
        problems.append(f"agent class: {saved['agent_class']!r} in the file, {info.agent_class!r} expected")
    else:
        problems += mismatches(saved["agent_kwargs"], info.agent_kwargs, "agent.")
    if problems:
        raise CheckpointError(path, "does not fit this run: " + "; ".join(problems))


def _require_training(path: str | Path, saved: Mapping[str, Any]) -> None:
    if saved["kind"] != "training" or saved["training"] is None:
        raise CheckpointError(path, f"is a {saved['kind']} checkpoint: resuming needs a training one ({LAST})")


def restore(path: str | Path, saved: Mapping[str, Any], runner: Runner) -> float | None:
    """Load a ``training`` checkpoint into ``runner`` (its agent, buffer, counters, generators) and torch's
    generators; returns the best eval success so far. Without a saved buffer, the buffer starts empty."""
    _require_training(path, saved)
    training = saved["training"]
    load_agent_state(path, runner.agent, saved["agent"])
    try:
        if training["buffer"] is not None:
            buffer = dict(training["buffer"])
            runner.buffer.load_state_dict({**buffer, "data": unpack_arrays(buffer["data"])})
        runner.load_state_dict(training["runner"])
    except (KeyError, ValueError, TypeError) as err:
        raise CheckpointError(path, f"the training state does not fit the run: {brief(err)}") from None
    torch.set_rng_state(training["torch_rng"])
    if training["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(training["cuda_rng"])
    return training["best_success"]


@dataclass(frozen=True)
class Resumable:
    """The checkpoint a resume loads: ``path``, its ``content``, and ``warning``, set when the newest
    generation could not be used and this is the previous one."""

    path: Path
    content: dict[str, Any]
    warning: str | None = None


def logged_env_steps(saved: Mapping[str, Any]) -> int:
    """The ``env_steps`` (of all ranks, as metrics.jsonl counts them) of the last epoch logged before checkpoint
    ``saved`` was written (0 before the first): the lines logged after it have more."""
    return int(saved["record"].get("env_steps", 0))


def has_resumable(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a resumable checkpoint file of either generation (readable or not)."""
    directory = Path(run_dir) / CHECKPOINT_DIR
    return (directory / LAST).is_file() or (directory / LAST_PREV).is_file()


def load_resumable(run_dir: str | Path) -> Resumable:
    """Load ``run_dir``'s ``checkpoints/last.pt``; if it is missing or damaged, its previous generation
    ``last.prev.pt``, with a warning naming both files and how many logged epochs will be done again. Both
    unusable: the ``CheckpointError`` of ``last.pt``, which also names the previous generation's problem.

    Then ``metrics.jsonl``: a last line cut short is reported in the warning, and when the checkpoint's last
    logged epoch has no record there (that line was its record), the previous generation is resumed from
    instead, so that the epoch runs again and the metrics end up those of an uninterrupted run."""
    directory = Path(run_dir) / CHECKPOINT_DIR
    newest, previous = directory / LAST, directory / LAST_PREV
    try:
        chosen = Resumable(newest, load(newest))
    except CheckpointError as err:
        newest_error = err
        try:
            saved = load(previous)
        except CheckpointError as err:
            problem = f"{newest_error.problem} (and the previous generation {previous}: {err.problem})"
            raise CheckpointError(newest, problem) from None
        metrics, logged = Path(run_dir) / "metrics.jsonl", logged_env_steps(saved)
        redone = sum(r["env_steps"] > logged for r in read_records(metrics)) if metrics.is_file() else 0
        warning = (
            f"{newest_error}; resuming from the previous generation {previous} (epoch {saved['counters']['epoch']}): "
            f"{redone} logged epoch{'s' if redone != 1 else ''} after it {'are' if redone != 1 else 'is'} done again"
        )
        chosen = Resumable(previous, saved, warning)
    return _with_lost_records_run_again(Path(run_dir), chosen)


def _with_lost_records_run_again(run_dir: Path, chosen: Resumable) -> Resumable:
    """``chosen``, or the previous generation when ``metrics.jsonl`` lacks the record of ``chosen``'s last logged
    epoch; the warning also reports a last line cut short."""
    metrics = run_dir / "metrics.jsonl"
    if not metrics.is_file():
        return chosen
    records, torn = read_log(metrics)
    logged = max((int(r["env_steps"]) for r in records if "env_steps" in r), default=0)
    notes = [chosen.warning] if chosen.warning else []
    if torn is not None:
        cut = torn if len(torn) <= 60 else torn[:57] + "..."
        notes.append(f"{metrics}: its last line is cut short, a record lost in a crash: {cut!r}")
    if logged_env_steps(chosen.content) <= logged:
        if torn is not None:
            notes.append("that epoch comes after the checkpoint and runs again")
        return Resumable(chosen.path, chosen.content, "; ".join(notes) or None)
    lost_epoch = chosen.content["record"].get("epoch")
    previous = chosen.path.with_name(LAST_PREV)
    try:
        saved = load(previous) if chosen.path.name == LAST else None
    except CheckpointError:
        saved = None
    if saved is not None and logged_env_steps(saved) <= logged:
        notes.append(
            f"the record of epoch {lost_epoch} is lost: resuming from the previous generation {previous} "
            f"(epoch {saved['counters']['epoch']}) to run that epoch again"
        )
        return Resumable(previous, saved, "; ".join(notes))
    notes.append(f"the record of epoch {lost_epoch} is lost, and no earlier checkpoint can run that epoch again")
    return Resumable(chosen.path, chosen.content, "; ".join(notes))


class Checkpointer:
    """Writes ``<run_dir>/checkpoints/last.pt`` (resumable) every ``every`` epochs and at the end, keeping the
    file it replaces as ``last.prev.pt``, and ``best.pt`` (agent only) whenever eval success reaches its best so
    far (ties go to the later epoch). An agent holding NaN or inf raises ``DivergenceError`` and writes nothing.

    Args:
        run_dir: the run's output directory. info: what the checkpoints record besides the states.
        every: epochs between ``last.pt`` writes. save_buffer: include the replay buffer (exact resume).
        best_success: the best eval success of earlier sessions of this run (resume).
    """

    def __init__(
        self,
        run_dir: str | Path,
        info: RunInfo,
        every: int = 1,
        save_buffer: bool = True,
        best_success: float | None = None,
    ) -> None:
        self.dir = Path(run_dir) / CHECKPOINT_DIR
        self.info = info
        self.every = validation.positive_int("every", every)
        self.save_buffer = validation.boolean("save_buffer", save_buffer)
        self.best_success: float | None = best_success
        self.dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(self.dir)

    @property
    def last_path(self) -> Path:
        return self.dir / LAST

    @property
    def best_path(self) -> Path:
        return self.dir / BEST

    @property
    def previous_path(self) -> Path:
        return self.dir / LAST_PREV

    def save_last(self, runner: Runner) -> int:
        """Write the resumable checkpoint now (the one it replaces becomes ``last.prev.pt``); returns its size."""
        saved = content("training", self.info, runner, self.save_buffer, self.best_success)
        check_parameters(saved["agent"], runner.epoch, runner.updates, f"{self.last_path} was not written")
        return save(self.last_path, saved, self.previous_path)

    def save_policy(self, runner: Runner, path: str | Path) -> int:
        """Write the agent alone (no training state) to ``path``; returns its size in bytes."""
        saved = content("policy", self.info, runner)
        check_parameters(saved["agent"], runner.epoch, runner.updates, f"{path} was not written")
        return save(path, saved)

    def on_epoch_end(self, runner: Runner, record: Mapping[str, Any]) -> None:
        """Runner hook: ``best.pt`` on a new best eval success (of the epochs that evaluate), ``last.pt`` every
        ``every`` epochs and at the end."""
        success = record["eval_success_rate"]
        if success is not None and (self.best_success is None or success >= self.best_success):
            self.best_success = float(success)
            self.save_policy(runner, self.best_path)
        if runner.epoch % self.every == 0 or runner.epoch >= runner.epochs:
            self.save_last(runner)
