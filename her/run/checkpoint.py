"""Training checkpoints: what a resumable (``last.pt``) or policy (``best.pt``, ``policy.pt``) checkpoint
of a run holds, restoring a run from one, and the ``Checkpointer`` hook that writes them during training.
The file format and atomic writes are ``her.checkpoint_file``'s.
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
    CheckpointError,
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

if TYPE_CHECKING:
    from envs import EnvInfo
    from her.run.runner import Runner

__all__ = [  # the file-level names are re-exported: one import serves a script
    "BEST",
    "CHECKPOINT_DIR",
    "LAST",
    "CheckpointError",
    "Checkpointer",
    "RunInfo",
    "check_resumable",
    "content",
    "env_record",
    "load",
    "resolve_path",
    "restore",
    "save",
    "write_atomic",
]


@dataclass(frozen=True)
class RunInfo:
    """What a checkpoint records about its run besides the states.

    Args:
        env: ``id``, ``kwargs`` (when any), ``obs_dim``, ``goal_dim``, ``action_dim``, ``action_max``, ``horizon``.
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
    there are none) and the sizes the networks were built for."""
    return {
        "id": env_id,
        **({"kwargs": dict(kwargs)} if kwargs else {}),
        "obs_dim": info.obs_dim,
        "goal_dim": info.goal_dim,
        "action_dim": info.action_dim,
        "action_max": info.action_max,
        "horizon": info.horizon,
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


class Checkpointer:
    """Writes ``<run_dir>/checkpoints/last.pt`` (resumable) every ``every`` epochs and at the end, and
    ``best.pt`` (agent only) whenever eval success reaches its best so far (ties go to the later epoch).

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

    def save_last(self, runner: Runner) -> int:
        """Write the resumable checkpoint now; returns its size in bytes."""
        return save(self.last_path, content("training", self.info, runner, self.save_buffer, self.best_success))

    def save_policy(self, runner: Runner, path: str | Path) -> int:
        """Write the agent alone (no training state) to ``path``; returns its size in bytes."""
        return save(path, content("policy", self.info, runner))

    def on_epoch_end(self, runner: Runner, record: Mapping[str, Any]) -> None:
        """Runner hook: ``best.pt`` on a new best eval success, ``last.pt`` every ``every`` epochs and at the end."""
        success = float(record["eval_success_rate"])
        if self.best_success is None or success >= self.best_success:
            self.best_success = success
            self.save_policy(runner, self.best_path)
        if runner.epoch % self.every == 0 or runner.epoch >= runner.epochs:
            self.save_last(runner)
